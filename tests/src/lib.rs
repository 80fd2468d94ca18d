//! Integration-test support for zc-trace; the tests live in tests/.
