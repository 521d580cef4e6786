//! Damaging a sled store on disk the ways files get damaged (truncated, bytes flipped, files
//! deleted), for the tests of what opening a damaged store does.

use std::path::Path;

/// One way to damage the store in a directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Damage {
    /// `db` cut to half of its written part.
    TruncateDbToHalf,
    /// 4 KiB of `db` from its middle XOR-ed.
    FlipBytesInTheMiddleOfDb,
    /// sled's `snap.*` files removed.
    DeleteSnapshotFiles,
    /// sled's `conf` removed.
    DeleteConf,
    /// sled's `blobs` directory removed.
    DeleteBlobs,
    /// `snap.*` removed and `db` cut to half.
    DeleteSnapshotsAndTruncateDb,
    /// `db` cut to half twice.
    TruncateDbToAQuarter,
    /// `db` emptied.
    EmptyDb,
    /// The first 4 KiB of `db` XOR-ed.
    FlipBytesAtTheStartOfDb,
    /// `conf` overwritten with garbage.
    GarbageConf,
}

/// Damages the sled store in `dir` as `how` says. Panics if the files cannot be touched (a
/// test set-up failure).
pub fn damage(dir: &Path, how: Damage) {
    let db = dir.join("db");
    match how {
        Damage::TruncateDbToHalf => truncate_to_half(&db),
        Damage::FlipBytesInTheMiddleOfDb => flip(&db, |len| len / 2),
        Damage::DeleteSnapshotFiles => delete_snapshots(dir),
        Damage::DeleteConf => std::fs::remove_file(dir.join("conf")).unwrap(),
        Damage::DeleteBlobs => {
            let blobs = dir.join("blobs");
            if blobs.exists() {
                std::fs::remove_dir_all(blobs).unwrap();
            }
        }
        Damage::DeleteSnapshotsAndTruncateDb => {
            delete_snapshots(dir);
            truncate_to_half(&db);
        }
        Damage::TruncateDbToAQuarter => {
            truncate_to_half(&db);
            truncate_to_half(&db);
        }
        Damage::EmptyDb => std::fs::write(&db, b"").unwrap(),
        Damage::FlipBytesAtTheStartOfDb => flip(&db, |_| 0),
        Damage::GarbageConf => std::fs::write(dir.join("conf"), b"\x01garbage").unwrap(),
    }
}

/// Cuts the file to half of its written part (sled's files have zeroed room at the end).
pub fn truncate_to_half(path: &Path) {
    let bytes = std::fs::read(path).unwrap();
    let written = bytes.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.set_len(written as u64 / 2).unwrap();
}

/// Removes sled's `snap.*` files from `dir`.
pub fn delete_snapshots(dir: &Path) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("snap.")
        {
            std::fs::remove_file(p).unwrap();
        }
    }
}

/// XORs 4 KiB of the file, from the offset `at(len)` gives.
fn flip(path: &Path, at: impl Fn(usize) -> usize) {
    let mut bytes = std::fs::read(path).unwrap();
    let start = at(bytes.len());
    let end = bytes.len().min(start + 4096);
    for b in &mut bytes[start..end] {
        *b ^= 0x5a;
    }
    std::fs::write(path, bytes).unwrap();
}
