//! What vm-test tells the person running it, one line at a time on stderr.

pub fn say(what: &str) {
    eprintln!("xtask vm-test: {what}");
}
