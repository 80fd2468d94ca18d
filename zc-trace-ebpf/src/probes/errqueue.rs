//! MSG_ZEROCOPY completions, as the traced process reads them: at the exit of a
//! `recvmsg(fd, msg, MSG_ERRQUEUE)`, the first control message in its buffer. The count of
//! sends completed, and of those the kernel copied after all, go to the process's counters;
//! user space then tells zero-copy sends from copied ones (and from ones whose outcome no
//! completion has told yet).

use zc_trace_common::{
    OpClass,
    errqueue::ErrqueueCmsg,
    relay::abi::{MSGHDR_CONTROL, MSGHDR_CONTROLLEN},
};

use crate::{stats::with_stats, umem::user};

/// A recvmsg with MSG_ERRQUEUE of the msghdr at `msghdr` returned: counts the completion
/// it delivered, if it is one.
#[inline(never)]
pub fn read(key: u32, msghdr: u64) {
    let control = user::<u64>(msghdr + MSGHDR_CONTROL);
    let controllen = user::<u64>(msghdr + MSGHDR_CONTROLLEN);
    let Some(done) = user::<ErrqueueCmsg>(control).completion(controllen) else { return };
    with_stats(key, OpClass::Recv, |s| {
        s.zc_completed += done.sends;
        if done.copied {
            s.zc_copied += done.sends;
        }
    });
}
