//! Times the kernel's CPU copies between user memory and a memfd's resident pages, and an
//! empty syscall round trip, for `zc-trace calibrate` (the figures become `advise::cost`'s
//! model). A memfd because its pages are plain memory: no disk, no page cache misses, no
//! allocation once filled, so what the loops time is the copy and the syscall alone.
use std::{
    ffi::CStr,
    io,
    time::{Duration, Instant},
};

use crate::workloads::sys::{Fd, check};

/// Each figure is the median of this many timed loops.
pub const REPETITIONS: usize = 5;

/// ns per call at one size: medians of [`REPETITIONS`] loops.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CallTimes {
    pub bytes: u64,
    /// pread(2) of `bytes` from the memfd into user memory.
    pub pread_ns: f64,
    /// pwrite(2) of `bytes` over the memfd's first pages.
    pub pwrite_ns: f64,
    /// pread(2) of 0 bytes on the same fd: the round trip without a copy.
    pub empty_ns: f64,
}

/// How long each timed loop runs: 100 ms, less when many sizes would take the whole
/// calibration past about 8 s (three calls per size, each timed [`REPETITIONS`] times), never
/// below 20 ms (timer and scheduler noise).
pub fn per_repetition(sizes: usize) -> Duration {
    let budget = Duration::from_secs(8) / (sizes.max(1) as u32 * 3 * REPETITIONS as u32);
    budget.clamp(Duration::from_millis(20), Duration::from_millis(100))
}

#[derive(Clone, Copy)]
enum Call {
    Empty,
    Read,
    Write,
}

/// Times the three calls at each of `sizes` (bytes, each > 0).
pub fn measure(sizes: &[u64], per_repetition: Duration) -> io::Result<Vec<CallTimes>> {
    let largest = sizes.iter().copied().max().unwrap_or(1).max(1) as usize;
    let memfd = memfd(c"zc-trace-calibrate")?;
    // Written byte by byte, so every page of the buffer is faulted in before timing.
    let mut buf = vec![0x5au8; largest];
    // Filling the memfd allocates its pages: the pwrites below overwrite them in place.
    let mut done = 0;
    while done < largest {
        // SAFETY: the buffer holds `largest` bytes.
        let n =
            check(unsafe { libc::pwrite(memfd.0, buf[done..].as_ptr().cast(), largest - done, done as libc::off_t) })?;
        done += n;
    }
    let mut out = Vec::with_capacity(sizes.len());
    for &bytes in sizes {
        let len = bytes as usize;
        let mut call = |c: Call| -> io::Result<()> {
            // SAFETY: `buf` holds at least `len` bytes; the memfd at least `len` from 0.
            let (ret, want) = match c {
                Call::Empty => (unsafe { libc::pread(memfd.0, buf.as_mut_ptr().cast(), 0, 0) }, 0),
                Call::Read => (unsafe { libc::pread(memfd.0, buf.as_mut_ptr().cast(), len, 0) }, len),
                Call::Write => (unsafe { libc::pwrite(memfd.0, buf.as_ptr().cast(), len, 0) }, len),
            };
            if check(ret)? != want {
                return Err(io::Error::other(format!("a {len}-byte call on a memfd moved {ret} bytes")));
            }
            Ok(())
        };
        let calls = [Call::Empty, Call::Read, Call::Write];
        let mut loops = [0u64; 3];
        for (i, &c) in calls.iter().enumerate() {
            loops[i] = calls_per_loop(&mut call, c, per_repetition)?;
        }
        // The three loops of a repetition run side by side, so that a change of clock speed
        // or a noisy neighbour affects the empty call as it does the copies it is taken from.
        let mut ns: [Vec<f64>; 3] = Default::default();
        for _ in 0..REPETITIONS {
            for (i, &c) in calls.iter().enumerate() {
                ns[i].push(time(&mut call, c, loops[i])?);
            }
        }
        out.push(CallTimes {
            bytes,
            empty_ns: median(&mut ns[0]),
            pread_ns: median(&mut ns[1]),
            pwrite_ns: median(&mut ns[2]),
        });
    }
    Ok(out)
}

/// How many calls fill `target`: estimated from runs doubling in length until one takes a
/// tenth of it (which also warms the caches and the branch predictors).
fn calls_per_loop(call: &mut impl FnMut(Call) -> io::Result<()>, c: Call, target: Duration) -> io::Result<u64> {
    let mut n = 1u64;
    loop {
        let ns = time(call, c, n)? * n as f64;
        if ns >= target.as_nanos() as f64 / 10.0 || n >= 1 << 40 {
            let per_call = (ns / n as f64).max(1.0);
            return Ok(((target.as_nanos() as f64 / per_call).ceil() as u64).max(1));
        }
        n *= 2;
    }
}

/// ns per call over `n` calls.
fn time(call: &mut impl FnMut(Call) -> io::Result<()>, c: Call, n: u64) -> io::Result<f64> {
    let start = Instant::now();
    for _ in 0..n {
        call(c)?;
    }
    Ok(start.elapsed().as_nanos() as f64 / n as f64)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn memfd(name: &CStr) -> io::Result<Fd> {
    // SAFETY: a valid C string.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 { Err(io::Error::last_os_error()) } else { Ok(Fd(fd)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_runs_measure_something_plausible() {
        let t = measure(&[4096, 65536], Duration::from_millis(2)).unwrap();
        assert_eq!(t.iter().map(|t| t.bytes).collect::<Vec<_>>(), [4096, 65536]);
        for t in t {
            assert!(t.empty_ns > 0.0 && t.pread_ns > 0.0 && t.pwrite_ns > 0.0, "{t:?}");
        }
    }

    #[test]
    fn many_sizes_shorten_the_loops_within_bounds() {
        assert_eq!(per_repetition(5), Duration::from_millis(100));
        assert_eq!(per_repetition(8), Duration::from_secs(8) / 120);
        assert_eq!(per_repetition(1000), Duration::from_millis(20));
    }
}
