//! The memory this process may still take: the system's `MemAvailable`, and below it the room
//! left under a cgroup (container) memory limit, v2 or v1, on this cgroup or any above it.

use std::path::Path;

/// Bytes this process may still allocate, or `None` where nothing is known (not Linux). Memory
/// the process freed but its allocator still holds (the caches of an earlier question, say) is
/// handed back to the system first, so that it counts as available.
pub(crate) fn available() -> Option<u64> {
    release_freed();
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok().and_then(|t| mem_available(&t));
    let cgroup =
        std::fs::read_to_string("/proc/self/cgroup").ok().and_then(|t| cgroup_room(Path::new("/sys/fs/cgroup"), &t));
    match (meminfo, cgroup) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Returns the free pages of glibc's heaps to the system.
fn release_freed() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `malloc_trim` takes no pointers and only releases memory no allocation uses.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// `MemAvailable` of a `/proc/meminfo` text, in bytes.
fn mem_available(meminfo: &str) -> Option<u64> {
    let kb: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// Limits at or above this are "no limit" (cgroup v1 writes one near `i64::MAX`).
const UNLIMITED: u64 = 1 << 60;

/// The least room (limit minus usage) over the memory cgroups of `proc_cgroup` (the text of
/// `/proc/self/cgroup`) and their ancestors under the mount `root`; `None` when none sets a limit.
fn cgroup_room(root: &Path, proc_cgroup: &str) -> Option<u64> {
    let mut least: Option<u64> = None;
    for line in proc_cgroup.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (fields.next(), fields.next(), fields.next()) else {
            continue;
        };
        // v2: "0::/path" under the mount itself; v1: "N:memory:/path" under `root/memory`.
        let (dir, limit_file, usage_file) = if id == "0" && controllers.is_empty() {
            (root.to_path_buf(), "memory.max", "memory.current")
        } else if controllers.split(',').any(|c| c == "memory") {
            (root.join("memory"), "memory.limit_in_bytes", "memory.usage_in_bytes")
        } else {
            continue;
        };
        // The cgroup itself, then every ancestor up to the mount (a container sees its own
        // cgroup as the mount's root, so a path that is not there falls back to the root).
        let mut parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty() && *p != "..").collect();
        loop {
            let here = parts.iter().fold(dir.clone(), |d, p| d.join(p));
            let read = |f: &str| std::fs::read_to_string(here.join(f)).ok()?.trim().parse::<u64>().ok();
            if let Some(limit) = read(limit_file).filter(|&l| l < UNLIMITED) {
                let room = limit.saturating_sub(read(usage_file).unwrap_or(0));
                least = Some(least.map_or(room, |l| l.min(room)));
            }
            if parts.pop().is_none() {
                break;
            }
        }
    }
    least
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, file: &str, text: &str) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join(file), text).unwrap();
    }

    #[test]
    fn reads_mem_available() {
        let text = "MemTotal:       24683568 kB\nMemFree:  1 kB\nMemAvailable:   24310080 kB\n";
        assert_eq!(mem_available(text), Some(24310080 * 1024));
        assert_eq!(mem_available("MemTotal: 5 kB\n"), None);
    }

    #[test]
    fn cgroup_v2_limit_of_the_group_or_an_ancestor() {
        let root = std::env::temp_dir().join(format!("focusllm-cgroup-v2-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let group = root.join("a/b");
        write(&group, "memory.max", "max\n");
        write(&group, "memory.current", "100\n");
        assert_eq!(cgroup_room(&root, "0::/a/b\n"), None);
        // A limit on the parent binds its children.
        write(&root.join("a"), "memory.max", "1000\n");
        write(&root.join("a"), "memory.current", "400\n");
        assert_eq!(cgroup_room(&root, "0::/a/b\n"), Some(600));
        // The tighter of two.
        write(&group, "memory.max", "300\n");
        assert_eq!(cgroup_room(&root, "0::/a/b\n"), Some(200));
        // Usage past the limit leaves no room.
        write(&group, "memory.current", "500\n");
        assert_eq!(cgroup_room(&root, "0::/a/b\n"), Some(0));
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn cgroup_v1_memory_controller_and_a_container_root() {
        let root = std::env::temp_dir().join(format!("focusllm-cgroup-v1-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let proc_cgroup = "9:name=systemd:/\n4:memory:/outer/inner\n1:cpu:/\n0::/\n";
        write(&root.join("memory"), "memory.limit_in_bytes", "9223372036854771712\n");
        write(&root.join("memory"), "memory.usage_in_bytes", "5\n");
        assert_eq!(cgroup_room(&root, proc_cgroup), None);
        // A container sees its own cgroup at the mount's root: the path is absent there.
        write(&root.join("memory"), "memory.limit_in_bytes", "2048\n");
        assert_eq!(cgroup_room(&root, proc_cgroup), Some(2043));
        write(&root.join("memory/outer/inner"), "memory.limit_in_bytes", "1024\n");
        write(&root.join("memory/outer/inner"), "memory.usage_in_bytes", "24\n");
        assert_eq!(cgroup_room(&root, proc_cgroup), Some(1000));
        std::fs::remove_dir_all(&root).unwrap();
    }
}
