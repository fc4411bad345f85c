//! Back the snapshot's heap with transparent huge pages.
//!
//! A query touches a few cells in each of many 4096-row chunks spread over hundreds of
//! megabytes, so on 4 KiB pages nearly every cell read is also a TLB miss (a nested page walk
//! on a virtual machine). 2 MiB pages make those reads several times cheaper. Kernels set to
//! `transparent_hugepage=madvise` (Debian's default) only use them where asked, so after a load
//! the engine asks for the large anonymous mappings its allocator holds, and collapses what is
//! already resident (`MADV_COLLAPSE`, Linux ≥ 6.1). Everything here is advice: on a kernel
//! without it the calls fail and nothing changes.

/// Mappings smaller than this are left alone (thread stacks, small arenas).
const MIN_MAPPING: usize = 4 << 20;
const HUGE_PAGE: usize = 2 << 20;
/// `MADV_COLLAPSE` (Linux 6.1); not yet in every `libc` release.
const MADV_COLLAPSE: libc::c_int = 25;

/// What [`advise_huge_pages`] did.
#[derive(Debug, Default, Clone, Copy)]
pub struct HugePageReport {
    /// Bytes advised to use huge pages.
    pub advised: usize,
    /// Bytes collapsed into huge pages now.
    pub collapsed: usize,
}

/// Advise (and collapse) every large private anonymous read-write mapping of this process.
pub fn advise_huge_pages() -> HugePageReport {
    let mut report = HugePageReport::default();
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return report;
    };
    for line in maps.lines() {
        let mut fields = line.split_whitespace();
        let (Some(range), Some(perms), Some(_off), Some(_dev), Some(inode)) = (
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
        ) else {
            continue;
        };
        let name = fields.next().unwrap_or("");
        if perms != "rw-p" || inode != "0" || !(name.is_empty() || name == "[heap]") {
            continue;
        }
        let Some((start, end)) = range.split_once('-') else {
            continue;
        };
        let (Ok(start), Ok(end)) = (
            usize::from_str_radix(start, 16),
            usize::from_str_radix(end, 16),
        ) else {
            continue;
        };
        let start = start.next_multiple_of(HUGE_PAGE);
        let end = end / HUGE_PAGE * HUGE_PAGE;
        if end <= start || end - start < MIN_MAPPING {
            continue;
        }
        let (addr, len) = (start as *mut libc::c_void, end - start);
        // SAFETY: advice on a range of this process's own mapping; it changes neither the
        // contents nor the validity of any address.
        unsafe {
            if libc::madvise(addr, len, libc::MADV_HUGEPAGE) == 0 {
                report.advised += len;
                if libc::madvise(addr, len, MADV_COLLAPSE) == 0 {
                    report.collapsed += len;
                }
            }
        }
    }
    report
}
