//! Standard output for every subcommand. A reader that closes the pipe early
//! (`crm-replay stats | head -1`) has what it wanted: the tool then ends quietly with exit 0
//! instead of panicking the way `println!` does. Anything else that stops the output (a full
//! disk) ends it with exit 2 and the reason.

use std::io::{ErrorKind, Write};

/// Writes one line to stdout, like `println!`.
macro_rules! outln {
    () => {
        $crate::output::write_line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::output::write_line(format_args!($($arg)*))
    };
}
pub(crate) use outln;

pub fn write_line(line: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    let written = out
        .write_fmt(line)
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush());
    match written {
        Ok(()) => {}
        Err(error) if error.kind() == ErrorKind::BrokenPipe => std::process::exit(0),
        Err(error) => {
            eprintln!("crm-replay: cannot write to stdout: {error}");
            std::process::exit(2);
        }
    }
}
