//! Archive and Office inspection on arbitrary files: zip (and archives inside archives), OLE
//! compound files (VBA storages), OOXML (`vbaProject.bin`), HTML attachments, executables by
//! content. Within the archive limits, whatever the file claims about itself.
#![no_main]

use std::sync::OnceLock;

use inspect::stages::malware::{ArchiveLimits, Malware};
use libfuzzer_sys::fuzz_target;

const NAMES: [&str; 6] = [
    "invoice.zip",
    "report.docm",
    "statement.xls",
    "page.html",
    "scan.pdf.exe",
    "notes.txt",
];

fn malware() -> &'static Malware {
    static M: OnceLock<Malware> = OnceLock::new();
    M.get_or_init(|| {
        let limits = ArchiveLimits {
            max_total: 4 << 20,
            max_inner: 1 << 20,
            ..Default::default()
        };
        Malware::new(None, std::time::Duration::from_secs(1), limits)
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, file)) = data.split_first() else {
        return;
    };
    let name = (pick < 250).then(|| NAMES[pick as usize % NAMES.len()]);
    malware().inspect_attachment(name, file);
});
