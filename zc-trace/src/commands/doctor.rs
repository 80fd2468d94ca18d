use aya::Btf;

use crate::{
    cli::DoctorArgs,
    kernel::{facts, privileges},
    probe::{doctor, loader, session},
    render::{self, output},
};

pub fn run(args: DoctorArgs) -> anyhow::Result<i32> {
    let sink = output::Sink::choose(args.output.json.as_deref(), args.output.output.as_deref(), false)?;
    privileges::require_tracing()?;
    facts::prepare_pseudo_filesystems();
    // As in a session: the loader's own BTF parse is released before ours is made (hence the
    // late initialisation), and ours serves both the load and the fentry/fexit checks.
    #[allow(clippy::needless_late_init)]
    let btf: Option<Btf>;
    let mut loader = loader::loader_without_btf();
    btf = loader::parse_kernel_btf();
    loader.btf(btf.as_ref());
    let mut ebpf = loader::load_doctor_with(&mut loader)?;
    let mut report = doctor::run(&mut ebpf, btf.as_ref());
    drop(ebpf);
    drop(loader);
    let (typed_loads, kernel_features) = session::doctor_checks();
    report.typed_loads = Some(typed_loads);
    report.kernel_features = Some(kernel_features);
    match &args.output.json {
        Some(_) => sink.write_json(&report)?,
        None => sink.write_text(&render::doctor::render_doctor(&report))?,
    }
    Ok(0)
}
