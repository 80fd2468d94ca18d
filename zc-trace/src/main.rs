use clap::Parser as _;
use zc_trace::{
    cli::{Cli, Command},
    commands,
    model::exit::{ExitKind, exit_kind_of, one_line},
};

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) if !err.use_stderr() => err.exit(), // --help, --version
        Err(err) => {
            // clap's own message is several lines; the first says what is wrong.
            let text = err.to_string();
            let first = text.lines().next().unwrap_or("bad usage").trim_start_matches("error: ");
            eprintln!("zc-trace: {first} (see zc-trace --help)");
            std::process::exit(ExitKind::Usage.code());
        }
    };
    let result = match cli.command {
        Command::Calibrate(args) => commands::calibrate::run(args),
        Command::Doctor(args) => commands::doctor::run(args),
        Command::Syscalls(args) => commands::syscalls::run(args),
        Command::Lab(args) => commands::lab::run(args),
        Command::Trace(args) => commands::trace::run(args),
        Command::Serve(args) => commands::serve::run(args),
        Command::Top(args) => commands::top::run(args),
        Command::Workload(args) => commands::workload::run(args),
        Command::Model => {
            print!("{}", zc_trace::render::classic::render_model());
            Ok(0)
        }
    };
    let code = result.unwrap_or_else(|err| {
        eprintln!("zc-trace: {}", one_line(&err));
        exit_kind_of(&err).code()
    });
    std::process::exit(code);
}
