//! Exit codes shared by every subcommand (Jepsen's convention).

/// The history is linearizable / the test passed.
pub const EXIT_VALID: u8 = 0;
/// A consistency violation was found.
pub const EXIT_INVALID: u8 = 1;
/// The check could not decide (time or memory budget exhausted).
pub const EXIT_UNKNOWN: u8 = 2;
/// Bad input, bad usage, or the tool itself failed.
pub const EXIT_BAD_INPUT: u8 = 254;
