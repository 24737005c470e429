//! The machine and its processes as Linux's `/proc` tells them: CPU time, resident
//! memory, open files, the machine's CPU model, memory and load. The field runs
//! (`keliling-field`), the campaign and the benchmarks (`keliling-bench`) all report
//! these, and each used to parse `/proc` on its own; one reader keeps their numbers
//! comparable.

use anyhow::{Context, Result};
use std::path::PathBuf;

/// CPU time and memory of one process.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcSample {
    /// utime + stime, seconds.
    pub cpu_secs: f64,
    /// VmRSS, KiB.
    pub rss_kib: u64,
    /// VmHWM (peak RSS), KiB.
    pub hwm_kib: u64,
}

/// `/proc/<pid>`, or `/proc/self` for `None`.
fn proc_dir(pid: Option<u32>) -> PathBuf {
    match pid {
        Some(p) => PathBuf::from(format!("/proc/{p}")),
        None => PathBuf::from("/proc/self"),
    }
}

/// One `kB` field of a `/proc/<pid>/status` text (`key` without the colon, e.g.
/// `VmRSS`), in KiB; `None` if the field is missing.
pub fn status_kib(status: &str, key: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// CPU seconds of every process whose command is `comm` (e.g. `postgres`: the server and
/// its backends), with what their exited children used (a backend that ended is counted
/// in its postmaster's cutime/cstime).
pub fn cpu_secs_of_command(comm: &str) -> f64 {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    let hz = rustix::param::clock_ticks_per_second().max(1) as f64;
    procs
        .filter_map(|e| {
            let e = e.ok()?;
            e.file_name().to_str()?.parse::<u32>().ok()?;
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            let (head, after) = stat.rsplit_once(')')?;
            if head.split_once('(')?.1 != comm {
                return None;
            }
            let f: Vec<u64> = after
                .split_whitespace()
                .skip(11)
                .take(4)
                .filter_map(|v| v.parse().ok())
                .collect();
            Some(f.iter().sum::<u64>() as f64 / hz)
        })
        .sum()
}

/// utime + stime of `pid` (of this process for `None`), from `/proc/<pid>/stat`, seconds.
pub fn cpu_secs(pid: Option<u32>) -> Result<f64> {
    let dir = proc_dir(pid);
    let stat = std::fs::read_to_string(dir.join("stat"))
        .with_context(|| format!("reading {}/stat", dir.display()))?;
    // The command name may hold spaces and parentheses: fields count from the last ')'.
    let after = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("malformed /proc stat")?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After ')': state is field 3, so utime (14) and stime (15) are at 11 and 12.
    let tick = |i: usize| -> Result<u64> {
        fields
            .get(i)
            .and_then(|v| v.parse().ok())
            .context("malformed /proc stat times")
    };
    let ticks = tick(11)? + tick(12)?;
    let hz = rustix::param::clock_ticks_per_second().max(1);
    Ok(ticks as f64 / hz as f64)
}

/// utime + stime (from `/proc/<pid>/stat`) and VmRSS / VmHWM (from `status`) of `pid`,
/// or of this process for `None`.
pub fn proc_sample(pid: Option<u32>) -> Result<ProcSample> {
    let cpu_secs = cpu_secs(pid)?;
    let dir = proc_dir(pid);
    let status = std::fs::read_to_string(dir.join("status"))
        .with_context(|| format!("reading {}/status", dir.display()))?;
    Ok(ProcSample {
        cpu_secs,
        rss_kib: status_kib(&status, "VmRSS").unwrap_or(0),
        hwm_kib: status_kib(&status, "VmHWM").unwrap_or(0),
    })
}

/// The soft and hard open-file limits of `pid` (from `/proc/<pid>/limits`).
pub fn nofile_limits(pid: Option<u32>) -> Option<(String, String)> {
    let text = std::fs::read_to_string(proc_dir(pid).join("limits")).ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    let mut parts = line["Max open files".len()..].split_whitespace();
    Some((parts.next()?.to_owned(), parts.next()?.to_owned()))
}

/// Open file descriptors of `pid` right now.
pub fn open_fds(pid: Option<u32>) -> Option<usize> {
    Some(std::fs::read_dir(proc_dir(pid).join("fd")).ok()?.count())
}

/// The whole machine's busy and total CPU time (from `/proc/stat`), seconds.
#[derive(Debug, Clone, Copy, Default)]
pub struct MachineCpu {
    pub busy_secs: f64,
    pub total_secs: f64,
}

/// The machine's CPU time so far (zero where `/proc/stat` cannot be read).
pub fn machine_cpu() -> MachineCpu {
    let Ok(text) = std::fs::read_to_string("/proc/stat") else {
        return MachineCpu::default();
    };
    let Some(line) = text.lines().find(|l| l.starts_with("cpu ")) else {
        return MachineCpu::default();
    };
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is inside user).
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    let hz = rustix::param::clock_ticks_per_second().max(1) as f64;
    MachineCpu {
        busy_secs: (total - idle.min(total)) as f64 / hz,
        total_secs: total as f64 / hz,
    }
}

/// What the rest of the machine did meanwhile: cores used by processes other than the
/// measured ones, from the machine's busy time minus theirs.
pub fn others_cores(before: MachineCpu, after: MachineCpu, ours_cpu_secs: f64, wall: f64) -> f64 {
    let busy = after.busy_secs - before.busy_secs;
    ((busy - ours_cpu_secs) / wall.max(1e-9)).max(0.0)
}

/// The 1, 5 and 15 minute load averages (from `/proc/loadavg`), as `"a b c"`; `"?"`
/// where they cannot be read.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "?".into())
}

/// The first CPU's model name (from `/proc/cpuinfo`).
pub fn cpu_model() -> Option<String> {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()?
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|m| m.trim().to_owned())
}

/// The machine's memory (MemTotal from `/proc/meminfo`), KiB.
pub fn mem_total_kib() -> Option<u64> {
    status_kib(&std::fs::read_to_string("/proc/meminfo").ok()?, "MemTotal")
}

/// The kernel's release (from `/proc/sys/kernel/osrelease`), e.g. `6.1.0-13-amd64`.
pub fn kernel_release() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .ok()
        .map(|k| k.trim().to_owned())
}
