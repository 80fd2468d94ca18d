//! The cost model: what one byte of CPU copy (each direction) and one syscall round trip cost
//! on this machine, measured by `zc-trace calibrate` at a few chunk sizes and stored as JSON
//! in the user's cache directory. The advisor prices a switch of strategy with it: copies
//! removed x ns per byte at the flow's chunk size, plus syscalls removed x ns per syscall.
//!
//! Figures are per size because a copy's cost per byte is not a constant: small copies pay the
//! per-call work of the copy routine and the page lookups, large ones fall out of the caches.
use std::{
    ffi::OsString,
    fs,
    io::Write as _,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use crate::{kernel::facts, model::exit::Fatal};

/// The file's name under `$XDG_CACHE_HOME/zc-trace/` (or `~/.cache/zc-trace/`).
pub const FILE_NAME: &str = "cost-model.json";

/// The JSON layout's version: a file of another version is measured again, not guessed at.
pub const VERSION: u32 = 1;

/// The sizes `zc-trace calibrate` measures unless told otherwise.
pub const DEFAULT_SIZES: &str = "4KiB,16KiB,64KiB,256KiB,1MiB";

/// A direction of CPU copy between user memory and the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Kernel -> user (read, recv): `_copy_to_user`.
    ToUser,
    /// User -> kernel (write, send): `_copy_from_user`.
    FromUser,
}

/// The three figures measured at one size.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SizeCost {
    pub bytes: u64,
    /// ns per byte copied kernel -> user: (t(pread of `bytes`) - t(0-byte pread)) / bytes.
    pub to_user_ns_per_byte: f64,
    /// ns per byte copied user -> kernel: (t(pwrite of `bytes`) - t(0-byte pread)) / bytes.
    pub from_user_ns_per_byte: f64,
    /// ns per syscall round trip: t(0-byte pread), measured beside this size's copies.
    pub syscall_ns: f64,
}

impl SizeCost {
    /// The figures from ns per call of a pread and a pwrite of `bytes` and of a 0-byte pread.
    /// A copy cheaper than the noise of the empty call is 0, never negative.
    pub fn from_call_ns(bytes: u64, pread_ns: f64, pwrite_ns: f64, empty_ns: f64) -> Self {
        let per_byte = |t: f64| ((t - empty_ns) / bytes as f64).max(0.0);
        Self {
            bytes,
            to_user_ns_per_byte: per_byte(pread_ns),
            from_user_ns_per_byte: per_byte(pwrite_ns),
            syscall_ns: empty_ns.max(0.0),
        }
    }

    fn ns_per_byte(&self, direction: Direction) -> f64 {
        match direction {
            Direction::ToUser => self.to_user_ns_per_byte,
            Direction::FromUser => self.from_user_ns_per_byte,
        }
    }
}

/// How the figures were measured, as the file records it.
pub fn method(per_repetition: Duration, repetitions: usize) -> String {
    format!(
        "per size S: t(S) of pread(2) of S bytes at offset 0 of a memfd whose pages are resident, into a \
         faulted-in user buffer (kernel->user copy); of pwrite(2) of S bytes at offset 0 of the same memfd, \
         overwriting its pages (user->kernel copy, no allocation); t(0) of a 0-byte pread(2) on the same fd \
         (the mode switches, no copy). Each t is ns per call, the median of {repetitions} loops of at least \
         {} ms each. ns per byte = (t(S) - t(0)) / S, at least 0; ns per syscall = t(0).",
        per_repetition.as_millis()
    )
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CostModel {
    pub version: u32,
    /// `uname -r` where it was measured.
    pub kernel_release: String,
    /// /proc/cpuinfo's `model name`, or "unknown".
    pub cpu_model: String,
    /// RFC 3339, UTC.
    pub measured_at: String,
    pub method: String,
    /// Ascending by `bytes`.
    pub sizes: Vec<SizeCost>,
}

impl CostModel {
    /// A model of figures just measured here, now.
    pub fn measured_now(mut sizes: Vec<SizeCost>, method: String) -> Self {
        sizes.sort_by_key(|s| s.bytes);
        Self {
            version: VERSION,
            kernel_release: facts::release(),
            cpu_model: facts::cpu_model(),
            measured_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            method,
            sizes,
        }
    }

    /// ns per byte copied in `direction` by calls of `chunk_bytes`: linear in log2(size)
    /// between the two measured sizes around it (copy costs change with the order of
    /// magnitude, not the byte), the end figure beyond the measured sizes.
    pub fn copy_ns_per_byte(&self, direction: Direction, chunk_bytes: u64) -> f64 {
        let Some((first, last)) = self.sizes.first().zip(self.sizes.last()) else { return 0.0 };
        if chunk_bytes <= first.bytes {
            return first.ns_per_byte(direction);
        }
        if chunk_bytes >= last.bytes {
            return last.ns_per_byte(direction);
        }
        let x = (chunk_bytes as f64).log2();
        for pair in self.sizes.windows(2) {
            let (lo, hi) = (&pair[0], &pair[1]);
            if chunk_bytes <= hi.bytes {
                let (x0, x1) = ((lo.bytes as f64).log2(), (hi.bytes as f64).log2());
                let t = (x - x0) / (x1 - x0);
                let (y0, y1) = (lo.ns_per_byte(direction), hi.ns_per_byte(direction));
                return y0 + t * (y1 - y0);
            }
        }
        last.ns_per_byte(direction)
    }

    /// ns per syscall round trip: the median of the sizes' figures (each measured beside its
    /// size's copies, so the median drops a size whose loop met frequency changes or noise).
    pub fn syscall_ns(&self) -> f64 {
        let mut v: Vec<f64> = self.sizes.iter().map(|s| s.syscall_ns).collect();
        v.sort_by(f64::total_cmp);
        match v.len() {
            0 => 0.0,
            n if n % 2 == 1 => v[n / 2],
            n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        }
    }

    /// What a file must hold to be used: this version, sizes ascending and positive, figures
    /// finite and not negative.
    fn check(&self) -> Result<(), String> {
        if self.version != VERSION {
            return Err(format!("version {} (this zc-trace reads version {VERSION})", self.version));
        }
        if self.sizes.is_empty() {
            return Err("no sizes".into());
        }
        if self.sizes.windows(2).any(|w| w[0].bytes >= w[1].bytes) || self.sizes[0].bytes == 0 {
            return Err("sizes not positive and ascending".into());
        }
        let fine = |v: f64| v.is_finite() && v >= 0.0;
        if !self
            .sizes
            .iter()
            .all(|s| fine(s.to_user_ns_per_byte) && fine(s.from_user_ns_per_byte) && fine(s.syscall_ns))
        {
            return Err("a figure is negative or not a number".into());
        }
        Ok(())
    }

    /// Writes the model as JSON to `path`, through a temporary file beside it renamed over it,
    /// so that a reader never sees half a model. An unwritable path is a usage error.
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        let cannot = |e: std::io::Error| {
            Fatal::usage(format!("cannot write the cost model to `{}`: {e}; {TRY_OUT}", path.display()))
        };
        let tmp = path.with_file_name(format!(
            ".{}.{}.tmp",
            path.file_name().map_or("cost-model".into(), |n| n.to_string_lossy()),
            std::process::id()
        ));
        let text = serde_json::to_string_pretty(self)?;
        let written = fs::File::create(&tmp)
            .and_then(|mut f| f.write_all(text.as_bytes()).and_then(|()| f.write_all(b"\n")))
            .and_then(|()| fs::rename(&tmp, path));
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(cannot(e).into());
        }
        Ok(())
    }

    /// The model stored at `path`.
    pub fn load(path: &Path) -> anyhow::Result<LoadedCostModel> {
        let shown = path.display();
        let text = fs::read_to_string(path).with_context(|| format!("cannot read the cost model `{shown}`"))?;
        let model: CostModel = serde_json::from_str(&text)
            .map_err(|e| anyhow::anyhow!("`{shown}` is not a cost model ({e}): run zc-trace calibrate again"))?;
        model
            .check()
            .map_err(|e| anyhow::anyhow!("`{shown}` is not a usable cost model ({e}): run zc-trace calibrate again"))?;
        Ok(LoadedCostModel { model, path: path.to_path_buf(), running_release: facts::release() })
    }

    /// The model at [`default_path`], or `None` when none was measured (no file there).
    pub fn load_default() -> anyhow::Result<Option<LoadedCostModel>> {
        let Some(path) = default_path() else { return Ok(None) };
        if !path.exists() {
            return Ok(None);
        }
        Self::load(&path).map(Some)
    }
}

const TRY_OUT: &str = "give a writable file with --out PATH";

/// `$XDG_CACHE_HOME/zc-trace/cost-model.json`, else `$HOME/.cache/zc-trace/cost-model.json`;
/// `None` when neither variable is set.
pub fn default_path() -> Option<PathBuf> {
    path_from(std::env::var_os("XDG_CACHE_HOME"), std::env::var_os("HOME"))
}

/// The XDG base directory rule: a relative or empty `XDG_CACHE_HOME` is ignored.
fn path_from(xdg_cache_home: Option<OsString>, home: Option<OsString>) -> Option<PathBuf> {
    let xdg = xdg_cache_home.map(PathBuf::from).filter(|p| p.is_absolute());
    let cache = xdg.or_else(|| home.filter(|h| !h.is_empty()).map(|h| PathBuf::from(h).join(".cache")))?;
    Some(cache.join("zc-trace").join(FILE_NAME))
}

/// The default path, its directory created: where `zc-trace calibrate` writes without `--out`.
pub fn prepare_default_path() -> Result<PathBuf, Fatal> {
    let path = default_path()
        .ok_or_else(|| Fatal::usage(format!("no cache directory: set XDG_CACHE_HOME or HOME, or {TRY_OUT}")))?;
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)
            .map_err(|e| Fatal::usage(format!("cannot create `{}`: {e}; {TRY_OUT}", dir.display())))?;
    }
    Ok(path)
}

/// A model and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedCostModel {
    pub model: CostModel,
    pub path: PathBuf,
    /// The release of the kernel running now (the model may have been measured on another).
    pub running_release: String,
}

impl LoadedCostModel {
    /// `measured on 6.1.0-1, running 6.12.0-1` when the model is from another kernel: still
    /// used (copy costs are mostly the CPU's), but said.
    pub fn kernel_note(&self) -> Option<String> {
        (self.model.kernel_release != self.running_release)
            .then(|| format!("measured on {}, running {}", self.model.kernel_release, self.running_release))
    }

    /// The model named for a report: path, date, kernel, and the note above.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "{} (measured {} on Linux {}, {})",
            self.path.display(),
            self.model.measured_at,
            self.model.kernel_release,
            self.model.cpu_model
        );
        if let Some(note) = self.kernel_note() {
            s += &format!("; {note}");
        }
        s
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A model of one size: every chunk size gets these figures.
    pub(crate) fn flat(to_user: f64, from_user: f64, syscall: f64) -> LoadedCostModel {
        let size = SizeCost {
            bytes: 4096,
            to_user_ns_per_byte: to_user,
            from_user_ns_per_byte: from_user,
            syscall_ns: syscall,
        };
        LoadedCostModel {
            model: CostModel {
                version: VERSION,
                kernel_release: "6.12.0".into(),
                cpu_model: "test CPU".into(),
                measured_at: "2025-01-02T03:04:05Z".into(),
                method: method(Duration::from_millis(100), 5),
                sizes: vec![size],
            },
            path: PathBuf::from("/cache/zc-trace/cost-model.json"),
            running_release: "6.12.0".into(),
        }
    }

    fn two_sizes() -> CostModel {
        let mut m = flat(0.0, 0.0, 0.0).model;
        m.sizes = vec![
            SizeCost { bytes: 4096, to_user_ns_per_byte: 0.4, from_user_ns_per_byte: 0.8, syscall_ns: 90.0 },
            SizeCost { bytes: 65536, to_user_ns_per_byte: 0.2, from_user_ns_per_byte: 0.4, syscall_ns: 110.0 },
        ];
        m
    }

    #[test]
    fn per_byte_figures_subtract_the_empty_call_and_never_go_negative() {
        let s = SizeCost::from_call_ns(4096, 500.0, 900.0, 100.0);
        assert_eq!(
            (s.to_user_ns_per_byte, s.from_user_ns_per_byte, s.syscall_ns),
            (400.0 / 4096.0, 800.0 / 4096.0, 100.0)
        );
        let s = SizeCost::from_call_ns(4096, 90.0, 100.0, 100.0);
        assert_eq!((s.to_user_ns_per_byte, s.from_user_ns_per_byte), (0.0, 0.0));
    }

    #[test]
    fn copy_cost_is_linear_in_log2_size_and_clamped_to_the_ends() {
        let m = two_sizes();
        // 16 KiB is halfway between 4 KiB and 64 KiB in log2 (12, 14, 16).
        assert!((m.copy_ns_per_byte(Direction::ToUser, 16384) - 0.3).abs() < 1e-12);
        assert!((m.copy_ns_per_byte(Direction::FromUser, 16384) - 0.6).abs() < 1e-12);
        assert_eq!(m.copy_ns_per_byte(Direction::ToUser, 4096), 0.4);
        assert_eq!(m.copy_ns_per_byte(Direction::ToUser, 1), 0.4);
        assert_eq!(m.copy_ns_per_byte(Direction::ToUser, 0), 0.4);
        assert_eq!(m.copy_ns_per_byte(Direction::ToUser, 1 << 30), 0.2);
        assert_eq!(m.syscall_ns(), 100.0);
    }

    #[test]
    fn the_cache_path_follows_xdg_then_home() {
        let p = |x: Option<&str>, h: Option<&str>| path_from(x.map(Into::into), h.map(Into::into));
        assert_eq!(p(Some("/x"), Some("/home/u")), Some(PathBuf::from("/x/zc-trace/cost-model.json")));
        assert_eq!(p(Some("rel"), Some("/home/u")), Some(PathBuf::from("/home/u/.cache/zc-trace/cost-model.json")));
        assert_eq!(p(Some(""), Some("/home/u")), Some(PathBuf::from("/home/u/.cache/zc-trace/cost-model.json")));
        assert_eq!(p(None, None), None);
    }

    #[test]
    fn a_saved_model_loads_back_and_bad_files_say_to_calibrate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.json");
        let m = two_sizes();
        m.save(&path).unwrap();
        let loaded = CostModel::load(&path).unwrap();
        assert_eq!(loaded.model, m);
        assert_eq!(loaded.path, path);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary file left");
        std::fs::write(&path, "{}").unwrap();
        assert!(CostModel::load(&path).unwrap_err().to_string().contains("run zc-trace calibrate"));
        let mut bad = m.clone();
        bad.sizes.reverse();
        bad.save(&path).unwrap();
        assert!(CostModel::load(&path).unwrap_err().to_string().contains("ascending"));
        let err = m.save(Path::new("/proc/forbidden/m.json")).unwrap_err();
        let line = crate::model::exit::one_line(&err);
        assert!(line.contains("/proc/forbidden/m.json") && line.contains("--out"), "{line}");
        assert_eq!(crate::model::exit::exit_kind_of(&err), crate::model::exit::ExitKind::Usage);
    }

    #[test]
    fn another_kernel_is_named() {
        let mut m = flat(0.1, 0.2, 100.0);
        assert_eq!(m.kernel_note(), None);
        m.running_release = "6.18.0".into();
        assert_eq!(m.kernel_note().as_deref(), Some("measured on 6.12.0, running 6.18.0"));
        assert!(m.describe().ends_with("; measured on 6.12.0, running 6.18.0"), "{}", m.describe());
    }
}
