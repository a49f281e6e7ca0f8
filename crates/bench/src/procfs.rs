//! What a server costs, read from /proc: CPU time and memory of a process and all
//! its descendants (Dovecot is a tree of processes; casella is one).

use std::collections::HashMap;

/// One process's figures.
#[derive(Clone, Debug, Default)]
struct Stat {
    ppid: u32,
    /// utime + stime + cutime + cstime, in clock ticks. cutime/cstime hold the CPU
    /// of children that exited and were reaped, so a tree's sum stays right when
    /// per-connection processes come and go during a measurement.
    ticks: u64,
}

fn read_stat(pid: u32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: fields start after the
    // last ')'.
    let rest = &text[text.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // f[0] is field 3 (state); field N is f[N - 3].
    let num = |n: usize| f.get(n - 3).and_then(|s| s.parse::<u64>().ok());
    Some(Stat {
        ppid: num(4)? as u32,
        ticks: num(14)? + num(15)? + num(16)? + num(17)?,
    })
}

fn all_pids() -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// `root` and every descendant that is alive now.
pub fn tree(root: u32) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for pid in all_pids() {
        if let Some(s) = read_stat(pid) {
            children.entry(s.ppid).or_default().push(pid);
        }
    }
    let mut out = Vec::new();
    if read_stat(root).is_none() {
        return out;
    }
    let mut todo = vec![root];
    while let Some(p) = todo.pop() {
        out.push(p);
        if let Some(c) = children.get(&p) {
            todo.extend(c.iter().copied());
        }
    }
    out
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// CPU seconds used so far by `root`'s tree (including reaped children).
pub fn tree_cpu_seconds(root: u32) -> f64 {
    let ticks: u64 = tree(root)
        .into_iter()
        .filter_map(read_stat)
        .map(|s| s.ticks)
        .sum();
    ticks as f64 / clock_ticks()
}

/// CPU seconds used so far by this process (the load generator), all threads.
pub fn self_cpu_seconds() -> f64 {
    read_stat(std::process::id()).map_or(0.0, |s| s.ticks as f64 / clock_ticks())
}

/// Memory of a process tree, in bytes.
#[derive(Clone, Copy, Debug, Default)]
pub struct Memory {
    pub processes: usize,
    /// Proportional set size: shared pages divided among the processes sharing them.
    pub pss: u64,
    pub rss: u64,
}

fn kb_field(text: &str, key: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

pub fn tree_memory(root: u32) -> Memory {
    let mut m = Memory::default();
    for pid in tree(root) {
        if let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")) {
            m.processes += 1;
            m.pss += kb_field(&text, "Pss:").unwrap_or(0) * 1024;
            m.rss += kb_field(&text, "Rss:").unwrap_or(0) * 1024;
        } else if let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
            // No smaps_rollup (old kernel or no permission): RSS only, and PSS ≈ RSS.
            let rss = kb_field(&text, "VmRSS:").unwrap_or(0) * 1024;
            m.processes += 1;
            m.pss += rss;
            m.rss += rss;
        }
    }
    m
}

/// MemAvailable from /proc/meminfo, in bytes.
pub fn mem_available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    kb_field(&text, "MemAvailable:").map(|k| k * 1024)
}

/// Raises the soft limit on open files to the hard limit; returns the new soft limit.
pub fn raise_nofile() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: lim is a valid rlimit for the call to fill in / read.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_cur < lim.rlim_max {
            let want = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
    }
    lim.rlim_cur
}

/// Sends `sig` to `pid`.
pub fn signal(pid: u32, sig: i32) {
    // SAFETY: kill has no memory-safety preconditions.
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

pub fn alive(pid: u32) -> bool {
    // A zombie still has a stat file; treat it as gone.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(t) => t
            .rfind(')')
            .and_then(|i| t[i + 2..].chars().next())
            .is_some_and(|state| state != 'Z' && state != 'X'),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_measured() {
        let me = std::process::id();
        assert!(tree(me).contains(&me));
        let m = tree_memory(me);
        assert!(m.processes >= 1 && m.rss > 0 && m.pss > 0);
        assert!(tree_cpu_seconds(me) >= 0.0);
        assert!(alive(me));
        assert!(mem_available().is_some());
    }
}
