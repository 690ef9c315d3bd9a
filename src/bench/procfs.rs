//! What the bench reads about processes from `/proc`: a server's resident memory (to put a
//! number on what a connection or an observer costs) and CPU time (to tell whether the server
//! or the bench itself was the bottleneck of a run on a machine they share).

use anyhow::Context;

/// Kernel clock ticks per second of the times in `/proc/PID/stat`. `USER_HZ` is 100 on every
/// Linux architecture the kernel exports to user space (`sysconf(_SC_CLK_TCK)`), and reading
/// it would need libc.
const TICKS_PER_SEC: f64 = 100.0;

/// The resident set size of process `pid`, kB, from /proc/PID/status.
pub(crate) fn rss_kb(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kb| kb.parse().ok())
        .with_context(|| format!("no VmRSS line in {path}"))
}

/// User + system CPU seconds process `pid` (or this process, for `None`) has used so far.
pub(crate) fn cpu_secs(pid: Option<u32>) -> anyhow::Result<f64> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".to_owned(),
    };
    let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    cpu_of_stat(&stat).with_context(|| format!("unexpected format of {path}"))
}

/// utime + stime of a `/proc/PID/stat` line, in seconds. The command name (field 2) is in
/// parentheses and may itself contain spaces and parentheses, so fields are counted after the
/// last `)`: utime and stime are fields 14 and 15, i.e. the 12th and 13th after it.
fn cpu_of_stat(stat: &str) -> Option<f64> {
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / TICKS_PER_SEC)
}

/// CPU time of the whole machine so far, from the first line of `/proc/stat`, in seconds
/// summed over all CPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct MachineCpu {
    /// Time the CPUs did work: user, nice, system, irq, softirq and steal.
    pub busy: f64,
    /// Of `busy`, the time in softirq: on loopback, most of the TCP stack, charged to no
    /// process.
    pub softirq: f64,
    /// Time the CPUs were idle (iowait included).
    pub idle: f64,
}

impl std::ops::Sub for MachineCpu {
    type Output = MachineCpu;
    fn sub(self, earlier: MachineCpu) -> MachineCpu {
        MachineCpu {
            busy: self.busy - earlier.busy,
            softirq: self.softirq - earlier.softirq,
            idle: self.idle - earlier.idle,
        }
    }
}

/// The machine's CPU time so far.
pub(crate) fn machine_cpu() -> anyhow::Result<MachineCpu> {
    let stat = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    machine_cpu_of(&stat).context("unexpected format of /proc/stat")
}

/// The `cpu` line of `/proc/stat`: user nice system idle iowait irq softirq steal … in ticks.
fn machine_cpu_of(stat: &str) -> Option<MachineCpu> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let t: Vec<u64> = line.split_whitespace().skip(1).map_while(|f| f.parse().ok()).collect();
    if t.len() < 7 {
        return None;
    }
    let ticks = |fields: &[usize]| fields.iter().map(|&i| t.get(i).copied().unwrap_or(0)).sum::<u64>() as f64;
    Some(MachineCpu {
        busy: ticks(&[0, 1, 2, 5, 6, 7]) / TICKS_PER_SEC,
        softirq: ticks(&[6]) / TICKS_PER_SEC,
        idle: ticks(&[3, 4]) / TICKS_PER_SEC,
    })
}

/// Datagrams the kernel dropped because a UDP socket's receive buffer was full, host-wide
/// (`RcvbufErrors` of `/proc/net/snmp`): on a machine running only the server and the bench,
/// the difference over a run is what the slower reader, usually the server, lost.
pub(crate) fn udp_rcvbuf_errors() -> Option<u64> {
    let snmp = std::fs::read_to_string("/proc/net/snmp").ok()?;
    rcvbuf_errors_of(&snmp)
}

fn rcvbuf_errors_of(snmp: &str) -> Option<u64> {
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let names = udp.next()?;
    let values = udp.next()?;
    let at = names.split_whitespace().position(|n| n == "RcvbufErrors")?;
    values.split_whitespace().nth(at)?.parse().ok()
}

/// CPU use between two readings, as a percentage of one core.
pub(crate) fn cpu_percent(before: Option<f64>, after: Option<f64>, wall_secs: f64) -> Option<f64> {
    match (before, after) {
        (Some(b), Some(a)) if wall_secs > 0.0 => Some((a - b).max(0.0) / wall_secs * 100.0),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_counted_after_the_command_name() {
        let line = "4242 (a (b) c) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 1 2 3";
        assert_eq!(cpu_of_stat(line), Some(3.0));
        assert_eq!(cpu_of_stat("garbage"), None);
    }

    #[test]
    fn machine_cpu_from_the_cpu_line() {
        let stat = "cpu  100 10 50 1000 20 5 30 7 0 0\ncpu0 50 5 25 500 10 2 15 3 0 0\nintr 1 2\n";
        let cpu = machine_cpu_of(stat);
        assert_eq!(
            cpu,
            Some(MachineCpu {
                busy: 2.02,
                softirq: 0.3,
                idle: 10.2
            })
        );
        assert_eq!(machine_cpu_of("cpu  1 2 3\n"), None);
        assert_eq!(machine_cpu_of("intr 1 2\n"), None);
        assert!(machine_cpu().is_ok_and(|c| c.busy > 0.0));
    }

    #[test]
    fn own_process_readable() {
        assert!(cpu_secs(None).is_ok());
        assert!(rss_kb(std::process::id()).is_ok_and(|kb| kb > 0));
    }

    #[test]
    fn rcvbuf_errors_found_by_name() {
        let snmp = "Ip: Forwarding\nIp: 1\nUdp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors\n\
                    Udp: 520495 18 414 520938 413\nUdpLite: InDatagrams RcvbufErrors\nUdpLite: 0 0\n";
        assert_eq!(rcvbuf_errors_of(snmp), Some(413));
        assert_eq!(rcvbuf_errors_of("Ip: 1\n"), None);
    }

    #[test]
    fn percent_of_one_core() {
        assert_eq!(cpu_percent(Some(1.0), Some(2.0), 2.0), Some(50.0));
        assert_eq!(cpu_percent(None, Some(2.0), 2.0), None);
    }
}
