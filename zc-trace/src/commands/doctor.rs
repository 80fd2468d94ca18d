use crate::{cli::DoctorArgs, doctor, kernel, loader, output, privileges, report};

pub fn run(args: DoctorArgs) -> anyhow::Result<i32> {
    if let Some(path) = &args.output.json {
        output::check_writable(path)?;
    }
    privileges::require_tracing()?;
    kernel::prepare_pseudo_filesystems();
    let mut ebpf = loader::load_doctor()?;
    let report = doctor::run(&mut ebpf);
    drop(ebpf);
    match &args.output.json {
        Some(path) => output::write_json(path, &report)?,
        None => print!("{}", report::render_doctor(&report)),
    }
    Ok(0)
}
