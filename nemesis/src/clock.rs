//! Clock faults through libfaketime (Debian package `libfaketime`).
//!
//! Each node is started with libfaketime preloaded and pointed at a control file of its own;
//! the controller rewrites that file (an offset in seconds, e.g. `-1.500`) while the node runs.
//! libfaketime shifts what the node's `clock_gettime`, `gettimeofday` and `time` return —
//! wall clock and monotonic clock alike, which is what lease-based reads depend on.
//!
//! Only programs that read the time through the C library can be fooled this way. A statically
//! linked binary never loads the preloaded library, and Go binaries read the clock through the
//! vDSO directly even when dynamically linked (etcd, Consul): [`check_binary`] detects both
//! before a test starts, so a clock fault is refused with a reason instead of silently doing
//! nothing.

use std::io::Read as _;
use std::path::{Path, PathBuf};

/// Where distributions install libfaketime (the multi-threaded variant, for threaded nodes).
const LIBRARY_CANDIDATES: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1",
    "/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1",
    "/usr/lib/faketime/libfaketimeMT.so.1",
    "/usr/local/lib/faketime/libfaketimeMT.so.1",
];

/// How often a node re-reads its control file, in seconds: a change takes effect within this.
pub const CACHE_SECONDS: u32 = 1;

/// The installed libfaketime, or a message saying how to install it.
pub fn library() -> Result<PathBuf, String> {
    LIBRARY_CANDIDATES
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .ok_or_else(|| {
            "clock faults need libfaketime (Debian: apt-get install libfaketime); it was not \
             found"
                .to_string()
        })
}

/// Environment variables that put a node under the control file `control`.
pub fn environment(library: &Path, control: &Path) -> Vec<(String, String)> {
    vec![
        ("LD_PRELOAD".to_string(), library.display().to_string()),
        (
            "FAKETIME_TIMESTAMP_FILE".to_string(),
            control.display().to_string(),
        ),
        (
            "FAKETIME_CACHE_DURATION".to_string(),
            CACHE_SECONDS.to_string(),
        ),
    ]
}

/// Sets the offset in a control file (milliseconds, negative for the past). The file is
/// replaced atomically, so a node never reads half of it.
pub fn write_offset(control: &Path, offset_ms: f64) -> Result<(), String> {
    let text = format!("{:+.3}\n", offset_ms / 1000.0);
    let tmp = control.with_extension("tmp");
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, control))
        .map_err(|e| {
            format!(
                "cannot write the clock control file {}: {e}",
                control.display()
            )
        })
}

/// Whether libfaketime can change the time `path` sees: it must be dynamically linked, and not
/// a Go program.
pub fn check_binary(path: &Path) -> Result<(), String> {
    let mut file =
        std::fs::File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let elf = Elf::parse(&bytes).ok_or_else(|| {
        format!(
            "{} is not a 64-bit little-endian ELF executable; clock faults cannot be checked \
             for it",
            path.display()
        )
    })?;
    if !elf.dynamic {
        return Err(format!(
            "{} is statically linked, so libfaketime cannot change the time it sees; clock \
             faults are refused for it",
            path.display()
        ));
    }
    if elf.go {
        return Err(format!(
            "{} is a Go program, which reads the clock without the C library, so libfaketime \
             cannot change the time it sees; clock faults are refused for it",
            path.display()
        ));
    }
    Ok(())
}

/// The little an ELF file must tell: does it have an interpreter (dynamic linking), and is it
/// a Go binary (a `.go.buildinfo` or `.note.go.buildid` section).
struct Elf {
    dynamic: bool,
    go: bool,
}

impl Elf {
    fn parse(b: &[u8]) -> Option<Elf> {
        if b.len() < 64 || &b[..4] != b"\x7fELF" || b[4] != 2 || b[5] != 1 {
            return None;
        }
        let u16_at = |o: usize| -> Option<u64> {
            Some(u64::from(u16::from_le_bytes(
                b.get(o..o.checked_add(2)?)?.try_into().ok()?,
            )))
        };
        let u32_at = |o: usize| -> Option<u64> {
            Some(u64::from(u32::from_le_bytes(
                b.get(o..o.checked_add(4)?)?.try_into().ok()?,
            )))
        };
        let u64_at = |o: usize| -> Option<u64> {
            Some(u64::from_le_bytes(
                b.get(o..o.checked_add(8)?)?.try_into().ok()?,
            ))
        };
        let phoff = u64_at(0x20)? as usize;
        let shoff = u64_at(0x28)? as usize;
        let phentsize = u16_at(0x36)? as usize;
        let phnum = u16_at(0x38)? as usize;
        let shentsize = u16_at(0x3a)? as usize;
        let shnum = u16_at(0x3c)? as usize;
        let shstrndx = u16_at(0x3e)? as usize;
        const PT_INTERP: u64 = 3;
        // Offsets come from the file: add and multiply without overflowing.
        let at = |base: usize, i: usize, size: usize| base.checked_add(i.checked_mul(size)?);
        let dynamic = (0..phnum)
            .filter_map(|i| u32_at(at(phoff, i, phentsize)?))
            .any(|t| t == PT_INTERP);
        // Section names, from the section-name string table.
        let mut go = false;
        if shnum > 0 && shstrndx < shnum {
            let strtab_hdr = at(shoff, shstrndx, shentsize)?;
            let strtab_off = u64_at(strtab_hdr.checked_add(0x18)?)? as usize;
            for i in 0..shnum {
                let hdr = at(shoff, i, shentsize)?;
                let name_off = u32_at(hdr)? as usize;
                let start = strtab_off.checked_add(name_off)?;
                let name = b.get(start..)?.split(|&c| c == 0).next()?;
                if name == b".go.buildinfo" || name == b".note.go.buildid" {
                    go = true;
                }
            }
        }
        Some(Elf { dynamic, go })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_written_in_seconds() {
        let dir = std::env::temp_dir().join(format!("fl-clock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("n1.faketime");
        write_offset(&f, -1500.0).unwrap();
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "-1.500\n");
        write_offset(&f, 250.0).unwrap();
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "+0.250\n");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn this_test_binary_can_be_faked() {
        // A Rust test binary: dynamically linked against glibc, not Go.
        let me = std::env::current_exe().unwrap();
        assert_eq!(check_binary(&me), Ok(()));
    }

    #[test]
    fn garbage_is_not_an_executable() {
        let dir = std::env::temp_dir().join(format!("fl-elf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("junk");
        std::fs::write(&f, b"#!/bin/sh\necho hi\n").unwrap();
        assert!(check_binary(&f).unwrap_err().contains("not a 64-bit"));
        let _ = std::fs::remove_dir_all(dir);
    }
}
