#!/usr/bin/env python3
"""Turn bench/results/results.csv (one line per run, written by bench/run.sh) into
results.md (min/median/max of every figure for every server, the mailedge targets checked
against the medians) and PNG plots through gnuplot (bench/plot.gp).

usage: bench/report.py RESULTS_DIR

Nothing here is measured or assumed: a figure comes from the CSV or the cell says why
there is none (n/a, failed to start, loadgen error, time budget).
"""
import csv
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
CERT_NAME = {"rsa": "RSA-2048", "ecdsa": "ECDSA P-256"}
ROW_ORDER = ["handshake", "latency", "starttls-smtp", "starttls-imap", "starttls-pop3",
             "resume13", "resume12", "bulk-up-1", "bulk-up-16", "bulk-down-1",
             "bulk-down-16"]
ROW_TITLE = {
    "handshake": "Full TLS 1.3 handshake + backend connect",
    "latency": "Latency at concurrency 1 (connect, full handshake, backend greeting)",
    "starttls-smtp": "STARTTLS SMTP session (greeting, EHLO, STARTTLS, handshake, EHLO from backend)",
    "starttls-imap": "STARTTLS IMAP session (greeting, CAPABILITY, STARTTLS, handshake, NOOP)",
    "starttls-pop3": "STARTTLS POP3 session (greeting, CAPA, STLS, handshake, NOOP)",
    "resume13": "Resumed handshake, TLS 1.3 ticket",
    "resume12": "Resumed handshake, TLS 1.2 ticket",
    "bulk-up-1": "Bulk upload (client -> backend), 1 stream",
    "bulk-up-16": "Bulk upload (client -> backend), 16 streams",
    "bulk-down-1": "Bulk download (backend -> client), 1 stream",
    "bulk-down-16": "Bulk download (backend -> client), 16 streams",
}
RESUMED_OK = 0.9  # a resumption figure counts only if this fraction of connections resumed
OTHER_WARN = 10  # % of CPU 0 used by other processes during a run: flagged in the cell
MIN_CPU_S = 0.2   # server CPU seconds a run needs for a per-CPU-second figure
GB = 1000.0       # "1 GB/s" = 1000 MB/s (loadgen reports MB/s = 10^6 bytes/s)


def num(s):
    try:
        return float(s)
    except (TypeError, ValueError):
        return 0.0


def fmt(v, kind):
    if v is None:
        return "?"
    if kind == "ms":
        return f"{v:.3g}" if v < 100 else f"{v:.0f}"
    if kind == "kb":
        return f"{v:.1f}"
    if kind == "frac":
        return f"{v * 100:.0f}%"
    return f"{v:,.0f}".replace(",", " ") if v >= 1000 else f"{v:.0f}" if v >= 10 else f"{v:.2g}"


def pct(x):
    x *= 100
    return f"{x:.2g}%" if x < 10 else f"{x:.0f}%"


class Cell:
    """All runs of one (server, cert, row)."""

    def __init__(self):
        self.runs = []

    def good(self):
        return [r for r in self.runs if r["status"] == "ok" and num(r["ok"]) > 0]

    def bad(self):
        return [r for r in self.runs if not (r["status"] == "ok" and num(r["ok"]) > 0)]

    def why(self, metric=None):
        """Why there is no figure (or why some runs gave none)."""
        if metric == "mb_per_cpu_s" and self.good():
            return (f"server used < {MIN_CPU_S} s CPU per run: too little to divide by "
                    f"(relayed {self.stat('mbps')[1]:.1f} MB/s)")
        for r in self.bad():
            if r["status"] == "ok":
                return f"no successful operation ({r['errors']} errors)" + (
                    f"; {r['note']}" if r["note"] else "")
            if r["status"] == "n/a":
                return "n/a: " + r["note"]
            return r["note"] or r["status"]
        return ""

    def values(self, metric):
        out = []
        for r in self.good():
            if metric == "cpu_us":
                v = cpu_us(r)
            elif metric == "per_core":
                # operations per second of server CPU: the load generator's own core
                # bounds the plain rate long before a fast server is busy.
                c = cpu_us(r)
                v = 1e6 / c if c > 0 else None
            elif metric == "mb_per_cpu_s":
                # /proc CPU times tick at 10 ms: below MIN_CPU_S the ratio is noise (a
                # stalled server "relays" a few MB in 0 ticks), so there is no figure.
                cpu = num(r["server_cpu_s"])
                v = num(r["mbps"]) * num(r["seconds"]) / cpu if cpu >= MIN_CPU_S else None
            else:
                v = num(r[metric])
            if v is not None:
                out.append(v)
        return out

    def stat(self, metric):
        v = self.values(metric)
        if not v:
            return None
        return (min(v), statistics.median(v), max(v))


def cpu_us(r):
    """Server CPU µs per operation of one run."""
    v = num(r["cpu_us_per_op"])
    if v <= 0 and num(r["ok"]) > 0:  # loadgen gave none: use run.sh's own count
        v = num(r["server_cpu_s"]) * 1e6 / num(r["ok"])
    return v


def load(path):
    cells, servers = {}, []
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            key = (r["server"], r["cert"], r["row"])
            cells.setdefault(key, Cell()).runs.append(r)
            if r["server"] not in servers:
                servers.append(r["server"])
    return cells, servers


def env(path):
    e = {}
    try:
        with open(path) as f:
            for line in f:
                k, _, v = line.rstrip("\n").partition("=")
                e[k] = v
    except OSError:
        pass
    return e


class Report:
    def __init__(self, outdir):
        self.out = outdir
        self.cells, self.servers = load(os.path.join(outdir, "results.csv"))
        self.env = env(os.path.join(outdir, "env.txt"))
        self.peers = [s for s in self.servers if s != "mailedge"]
        self.lines = []
        self.targets = []  # (figure, target, verdict)
        self.notes = []    # footnotes: reasons for missing figures
        self.noisy = set()  # servers with runs disturbed by other work on CPU 0

    def cell(self, server, cert, row):
        return self.cells.get((server, cert, row), Cell())

    def med(self, server, cert, row, metric):
        s = self.cell(server, cert, row).stat(metric)
        return s[1] if s else None

    def text(self, server, cert, row, metric, kind):
        c = self.cell(server, cert, row)
        if not c.runs:
            return "not run"
        s = c.stat(metric)
        if s is None:
            return self.note(c.why(metric) or "no figure")
        lo, mid, hi = s
        t = f"**{fmt(mid, kind)}**"
        if len(c.values(metric)) > 1:
            t += f" ({fmt(lo, kind)}–{fmt(hi, kind)})"
        notes = []
        if row.startswith("resume"):
            fr = c.stat("resumed")
            if fr and fr[1] < RESUMED_OK:
                notes.append(f"only {fmt(fr[1], 'frac')} resumed")
        if row.startswith("idle-"):
            want = int(row.split("-")[1])
            held = min(num(r["ok"]) for r in c.good())
            if held < want:
                notes.append(f"only {held:.0f} of {want} sessions opened in some run")
        other = statistics.median(num(r.get("cpu0_other_pct")) for r in c.good())
        if other >= OTHER_WARN:
            notes.append(f"CPU 0 {other:.0f}% used by other work")
            self.noisy.add(server)
        errs = sum(num(r["errors"]) for r in c.good())
        oks = sum(num(r["ok"]) for r in c.good())
        if errs > 0 and metric not in ("rss_kb_per_session",):
            notes.append(f"{errs:.0f} errors / {oks:.0f} ok")
        if c.bad():
            notes.append(f"{len(c.bad())} of {len(c.runs)} runs without figure "
                         + self.note(c.why()))
        if notes:
            t += " — " + "; ".join(notes)
        return t

    def note(self, why):
        """A reason as a numbered footnote (the same reason gets the same number); short
        reasons (n/a, ...) stay in the cell."""
        if len(why) <= 60:
            return why
        if why not in self.notes:
            self.notes.append(why)
        head = why.split(":")[0] if ":" in why[:40] else "see note"
        return f"{head} [{self.notes.index(why) + 1}]"

    # ---- targets ----
    def best_peer(self, cert, row, metric, higher=True):
        best = None
        for p in self.peers:
            v = self.med(p, cert, row, metric)
            if v is None:
                continue
            if row.startswith("resume"):
                fr = self.med(p, cert, row, "resumed")
                if fr is None or fr < RESUMED_OK:
                    continue
            if best is None or (v > best[1] if higher else v < best[1]):
                best = (p, v)
        return best

    def missing(self, cert, row, metric=None):
        c = self.cell("mailedge", cert, row)
        return "not checked: mailedge has no figure (" + (c.why(metric) or "not run") + ")"

    @staticmethod
    def at_most(v, limit, unit, kind):
        if v <= limit:
            return f"met ({fmt(v, kind)} ≤ {fmt(limit, kind)} {unit})"
        return f"**missed by {pct((v - limit) / limit)}** ({fmt(v, kind)} > {fmt(limit, kind)} {unit})"

    @staticmethod
    def at_least(v, need, unit, kind, what=""):
        if v >= need:
            return f"met ({fmt(v, kind)} ≥ {fmt(need, kind)} {unit}{what})"
        return (f"**missed by {pct((need - v) / need)}** ({fmt(v, kind)} < "
                f"{fmt(need, kind)} {unit}{what})")

    def target(self, cert, row, metric):
        """Verdict for the mailedge target of this figure, or None if it has none."""
        m = self.med("mailedge", cert, row, metric)
        if row == "handshake" and metric == "cpu_us":
            limit = {"rsa": 650, "ecdsa": 150}.get(cert)
            if limit is None:
                return None
            return ("≤ %d µs" % limit, self.missing(cert, row) if m is None
                    else self.at_most(m, limit, "µs", "n"))
        # Rates are compared per server core (operations per server CPU-second): the
        # load generator's single core bounds the plain rate of every fast server alike.
        if row.startswith("starttls-") and metric == "per_core":
            goal = "≥ 1.6× nginx mail per core"
            if m is None:
                return goal, self.missing(cert, row)
            n = self.med("nginx", cert, row, "per_core")
            if n is None:
                return goal, "not checked: nginx has no figure (" + (
                    self.cell("nginx", cert, row).why() or "not run") + ")"
            return goal, self.at_least(m, 1.6 * n, "/s per core", "n",
                                       f" = 1.6 × nginx {fmt(n, 'n')}")
        if row.startswith("resume") and metric == "per_core":
            goal = "≥ 2× best peer per core"
            if m is None:
                return goal, self.missing(cert, row)
            fr = self.med("mailedge", cert, row, "resumed") or 0
            if fr < RESUMED_OK:
                return goal, (f"**missed**: only {fmt(fr, 'frac')} of mailedge's connections "
                              f"resumed (mostly full handshakes)")
            b = self.best_peer(cert, row, "per_core")
            if b is None:
                return goal, "not checked: no peer resumed ≥ 90% of its connections"
            return goal, self.at_least(m, 2 * b[1], "/s per core", "n",
                                       f" = 2 × {b[0]} {fmt(b[1], 'n')}")
        if row.startswith("bulk-") and metric == "mb_per_cpu_s":
            # Per core, like the rates: MB/s itself is bounded by the load generator's
            # core, which encrypts or decrypts every byte too.
            goal = "≥ 1 GB/s per core and ≥ 1.3× best peer per core"
            if m is None:
                return goal, self.missing(cert, row, metric)
            v1 = self.at_least(m, GB, "MB per server CPU-second", "n")
            b = self.best_peer(cert, row, "mb_per_cpu_s")
            if b is None:
                return goal, v1 + "; 1.3× best peer not checked: no peer figure"
            v2 = self.at_least(m, 1.3 * b[1], "MB per CPU-second", "n",
                               f" = 1.3 × {b[0]} {fmt(b[1], 'n')}")
            if v1.startswith("met") and v2.startswith("met"):
                return goal, v1 + "; " + v2
            return goal, ("**missed**: " + v1.replace("**", "") + "; " + v2.replace("**", ""))
        if row.startswith("idle-") and metric == "rss_kb_per_session":
            goal = "≤ 8 KB"
            return goal, (self.missing(cert, row) if m is None
                          else self.at_most(m, 8.0, "KB", "kb"))
        if row == "latency" and metric in ("p50_ms", "p99_ms"):
            goal = "≤ best peer"
            if m is None:
                return goal, self.missing(cert, row)
            b = self.best_peer(cert, row, metric, higher=False)
            if b is None:
                return goal, "not checked: no peer figure"
            return goal, self.at_most(m, b[1], f"ms = {b[0]}", "ms")
        return None

    # ---- output ----
    def table(self, title, figures):
        """figures: list of (label, cert, row, metric, kind)."""
        self.lines.append(f"### {title}\n")
        self.lines.append("| Figure | " + " | ".join(self.servers) + " | mailedge target |")
        self.lines.append("|---" * (len(self.servers) + 2) + "|")
        for label, cert, row, metric, kind in figures:
            cells = [self.text(s, cert, row, metric, kind) for s in self.servers]
            t = self.target(cert, row, metric)
            tt = "—"
            if t:
                tt = f"{t[0]}: {t[1]}"
                self.targets.append((f"{title}: {label}", t[0], t[1]))
            self.lines.append(f"| {label} | " + " | ".join(c.replace("|", "/") for c in cells)
                              + f" | {tt} |")
        self.lines.append("")

    def rows_present(self):
        present = {}
        for (_, cert, row) in self.cells:
            present.setdefault(row, [])
            if cert not in present[row]:
                present[row].append(cert)
        for row in present:
            present[row].sort(key=lambda c: list(CERT_NAME).index(c) if c in CERT_NAME else 9)
        return present

    def build(self):
        e = self.env
        pres = self.rows_present()
        L = self.lines
        L.append("# mailedge benchmark results\n")
        if e.get("mode") == "quick":
            L.append("**Quick (smoke) run: short runs, figures are indicative only.**\n")
        L.append(f"{e.get('mode', '?')} run, {e.get('date', '?')}, git {e.get('git', '?')}, "
                 f"{e.get('total_seconds', '?')} s in all. Produced by `make bench` "
                 "(bench/run.sh); figures are measured, never edited.\n")
        L.append(f"- Machine: {e.get('cpu', '?')}, Linux {e.get('kernel', '?')}, load average "
                 f"{e.get('loadavg_start', '?')} at start, {e.get('loadavg_end', '?')} at the end. "
                 "Server pinned to CPU 0; loadgen and sink on CPU 1. All traffic on loopback. "
                 f"A cell says so when other work (other processes, or time stolen by the "
                 f"hypervisor) used ≥ {OTHER_WARN}% of CPU 0 during its runs (the machine is "
                 "shared): such figures understate the server and are not comparable between "
                 "servers; CPU µs per operation is the steadier figure.")
        L.append(f"- Each figure: {e.get('runs', '?')} runs of {e.get('seconds', '?')} s, shown as "
                 "**median** (min–max). Rate rows at concurrency "
                 f"{e.get('concurrency', '?')}. TLS 1.3 TLS_AES_128_GCM_SHA256, X25519 "
                 "(TLS 1.2 row: ECDHE-*-AES128-GCM-SHA256); the same certificate for every server.")
        L.append("- CPU µs per operation: the server's user+system CPU time (all its processes "
                 "and threads, from /proc/PID/stat) over the run divided by completed operations. "
                 "Bulk \"per core\": MB relayed per second of server CPU time.")
        L.append("- Servers: " + "; ".join(
            f"{s}: {e.get(s, '?').strip()}" for s in self.servers if e.get(s)) + ".")
        L.append("- nginx: the implicit-TLS rows use its stream module (TLS termination + TCP "
                 "relay); the STARTTLS rows its mail module, which answers the command after "
                 "STARTTLS itself and connects to a backend only after a client login. nginx's "
                 "STARTTLS figures therefore include no backend session (mailedge's and "
                 "stunnel's do): they are an upper bound for nginx.")
        L.append("- Resumption: a figure counts as resumption only if ≥ 90% of the connections "
                 "resumed; best-peer comparisons use such peers only.")
        L.append("")

        figs = []
        for cert in pres.get("handshake", []):
            n = CERT_NAME.get(cert, cert)
            figs.append((f"{n}: handshakes/s", cert, "handshake", "rate", "n"))
            figs.append((f"{n}: server CPU µs per handshake", cert, "handshake", "cpu_us", "n"))
        if figs:
            self.table(ROW_TITLE["handshake"], figs)

        figs = []
        for row in ("starttls-smtp", "starttls-imap", "starttls-pop3"):
            for cert in pres.get(row, []):
                n = f"{row[9:].upper()} ({CERT_NAME.get(cert, cert)})"
                figs.append((f"{n}: sessions/s", cert, row, "rate", "n"))
                figs.append((f"{n}: server CPU µs per session", cert, row, "cpu_us", "n"))
                figs.append((f"{n}: sessions per server CPU-second", cert, row, "per_core",
                             "n"))
        if figs:
            self.table("STARTTLS sessions incl. backend session", figs)

        figs = []
        for row in ("resume13", "resume12"):
            for cert in pres.get(row, []):
                n = f"TLS 1.{row[-1]} ticket ({CERT_NAME.get(cert, cert)})"
                figs.append((f"{n}: resumed handshakes/s", cert, row, "rate", "n"))
                figs.append((f"{n}: server CPU µs per handshake", cert, row, "cpu_us", "n"))
                figs.append((f"{n}: resumed handshakes per server CPU-second", cert, row,
                             "per_core", "n"))
                figs.append((f"{n}: fraction resumed", cert, row, "resumed", "frac"))
        if figs:
            self.table("Resumed handshakes (+ backend connect)", figs)

        figs = []
        for row in ("bulk-up-1", "bulk-up-16", "bulk-down-1", "bulk-down-16"):
            for cert in pres.get(row, []):
                d = "up" if "-up-" in row else "down"
                k = row.rsplit("-", 1)[1]
                n = f"{d}, {k} stream{'s' if k != '1' else ''}"
                figs.append((f"{n}: MB/s", cert, row, "mbps", "n"))
                figs.append((f"{n}: MB per server CPU-second", cert, row, "mb_per_cpu_s", "n"))
        if figs:
            self.table("Bulk relay throughput", figs)

        figs = []
        idle_rows = sorted((r for r in pres if r.startswith("idle-")),
                           key=lambda r: int(r.split("-")[1]))
        for row in idle_rows:
            for cert in pres[row]:
                figs.append((f"{int(row.split('-')[1]):,} sessions: KB RSS per session".replace(",", " "),
                             cert, row, "rss_kb_per_session", "kb"))
        if figs:
            self.table("Memory per idle relayed TLS session", figs)

        figs = []
        for cert in pres.get("latency", []):
            n = CERT_NAME.get(cert, cert)
            figs.append((f"{n}: p50 ms", cert, "latency", "p50_ms", "ms"))
            figs.append((f"{n}: p99 ms", cert, "latency", "p99_ms", "ms"))
        if figs:
            self.table(ROW_TITLE["latency"], figs)

        # Summary of targets first: insert after the header notes.
        summ = ["## mailedge targets\n", "| Figure | Target | Verdict |", "|---|---|---|"]
        for fig, goal, verdict in self.targets:
            summ.append(f"| {fig} | {goal} | {verdict} |")
        met = sum(1 for t in self.targets if t[2].startswith("met"))
        summ.append("")
        summ.append(f"{met} of {len(self.targets)} targets met.\n")
        if self.noisy:
            summ.append("**Caution:** other work used CPU 0 during some runs of "
                        + ", ".join(sorted(self.noisy)) + " (flagged in the cells below); "
                        "re-run on an otherwise idle machine before drawing conclusions.\n")
        summ.append("## All figures\n")
        idx = next((i for i, l in enumerate(L) if l.startswith("### ")), len(L))
        self.lines = L[:idx] + summ + L[idx:]
        if self.notes:
            self.lines.append("### Notes\n")
            for i, n in enumerate(self.notes, 1):
                self.lines.append(f"{i}. {n}")
            self.lines.append("")
        self.lines.append("Plots: " + ", ".join(
            f"[{p}]({p})" for p in self.plots()) + "\n")
        tls = os.path.join(self.out, "tls.txt")
        if os.path.exists(tls):
            self.lines.append("### Negotiated TLS (openssl s_client, once per server and "
                              "certificate)\n")
            self.lines.append("| Server | Certificate | Client offer | Negotiated |")
            self.lines.append("|---|---|---|---|")
            with open(tls) as f:
                for line in f:
                    parts = line.rstrip("\n").split(",", 3)
                    if len(parts) == 4:
                        offer = {"tls1_3": "TLS 1.3 only", "tls1_2": "TLS 1.2 only",
                                 "tlsstarttls": "STARTTLS SMTP, TLS 1.3"}.get(parts[2], parts[2])
                        self.lines.append(f"| {parts[0]} | {CERT_NAME.get(parts[1], parts[1])} "
                                          f"| {offer} | {parts[3]} |")
            self.lines.append("")
        self.lines.append("Raw runs: [results.csv](results.csv); server, sink and loadgen logs: "
                          "logs/.\n")

    # ---- plots ----
    def plots(self):
        return self._plots if hasattr(self, "_plots") else []

    def plot(self, name, title, ylabel, groups, metric):
        """groups: list of (label, cert, row). One bar per server per group."""
        datf = os.path.join(self.out, f"{name}.dat")
        have = False
        with open(datf, "w") as f:
            f.write("# group " + " ".join(f"{s}_med {s}_min {s}_max" for s in self.servers) + "\n")
            for label, cert, row in groups:
                vals = []
                for s in self.servers:
                    st = self.cell(s, cert, row).stat(metric)
                    if st:
                        have = True
                        vals += [st[1], st[0], st[2]]
                    else:
                        vals += ["NaN"] * 3
                f.write('"%s" ' % label + " ".join(str(v) for v in vals) + "\n")
        if not have:
            os.unlink(datf)
            return
        png = os.path.join(self.out, f"{name}.png")
        cmd = ["gnuplot", "-e",
               f"datafile='{datf}'; outfile='{png}'; ptitle='{title}'; "
               f"ylabel='{ylabel}'; servers='{' '.join(self.servers)}'",
               os.path.join(HERE, "plot.gp")]
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
            if r.returncode == 0 and os.path.exists(png):
                self._plots = self.plots() + [f"{name}.png"]
            else:
                print(f"report: gnuplot failed for {name}: {r.stderr.strip()[:300]}",
                      file=sys.stderr)
        except (OSError, subprocess.TimeoutExpired) as e:
            print(f"report: gnuplot not run for {name}: {e}", file=sys.stderr)
        finally:
            if os.path.exists(datf):
                os.unlink(datf)

    def all_plots(self):
        pres = self.rows_present()
        hs = [(CERT_NAME.get(c, c), c, "handshake") for c in pres.get("handshake", [])]
        self.plot("handshake_rate", "Full TLS 1.3 handshakes + backend connect", "handshakes/s",
                  hs, "rate")
        self.plot("handshake_cpu", "Server CPU per full handshake (lower is better)",
                  "CPU µs per handshake", hs, "cpu_us")
        st = [(f"{r[9:].upper()} {CERT_NAME.get(c, c)}", c, r)
              for r in ("starttls-smtp", "starttls-imap", "starttls-pop3") for c in pres.get(r, [])]
        self.plot("starttls_rate", "STARTTLS sessions (nginx: without backend session)",
                  "sessions/s", st, "rate")
        rs = [(f"TLS 1.{r[-1]} {CERT_NAME.get(c, c)}", c, r)
              for r in ("resume13", "resume12") for c in pres.get(r, [])]
        self.plot("resume_rate", "Resumed handshakes (tickets)", "handshakes/s", rs, "rate")
        bk = [(r.replace("bulk-", "").replace("-", " x"), c, r)
              for r in ("bulk-up-1", "bulk-up-16", "bulk-down-1", "bulk-down-16")
              for c in pres.get(r, [])]
        self.plot("bulk_mbps", "Bulk relay throughput", "MB/s", bk, "mbps")
        idle = sorted((r for r in pres if r.startswith("idle-")), key=lambda r: int(r[5:]))
        self.plot("idle_rss", "RSS per idle relayed TLS session (lower is better)",
                  "KB per session", [(f"{r[5:]} sessions", c, r) for r in idle for c in pres[r]],
                  "rss_kb_per_session")
        lat = [(f"p50 {CERT_NAME.get(c, c)}", c, "latency") for c in pres.get("latency", [])]
        lat99 = [(f"p99 {CERT_NAME.get(c, c)}", c, "latency") for c in pres.get("latency", [])]
        # p50 and p99 are different metrics: one plot each keeps plot.gp generic.
        self.plot("latency_p50", "Latency at concurrency 1, p50 (lower is better)", "ms", lat,
                  "p50_ms")
        self.plot("latency_p99", "Latency at concurrency 1, p99 (lower is better)", "ms", lat99,
                  "p99_ms")


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    rep = Report(sys.argv[1])
    rep.all_plots()
    rep.build()
    with open(os.path.join(sys.argv[1], "results.md"), "w") as f:
        f.write("\n".join(rep.lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
