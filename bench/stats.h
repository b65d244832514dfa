/* stats: what loadgen measures besides its own counters — per-operation latency
 * percentiles from a bounded sample, and the server's CPU time and RSS read from /proc. */
#ifndef BENCH_STATS_H
#define BENCH_STATS_H

#include <stddef.h>
#include <sys/types.h>

/* Latency samples in milliseconds. At most `cap` are kept (reservoir sampling, so a long
 * run is sampled evenly rather than only its beginning); memory is fixed at init. */
struct stats_lat {
	double *v;
	size_t cap, len;
	unsigned long long seen;
	unsigned long long rng;
};

int stats_lat_init(struct stats_lat *s, size_t cap);
void stats_lat_add(struct stats_lat *s, double ms);
/* p in [0,100]; sorts the samples in place; 0 when there are none. */
double stats_lat_pct(struct stats_lat *s, double p);
void stats_lat_free(struct stats_lat *s);

/* The server's processes: the PIDs given plus all their descendants (worker processes),
 * found anew at every sample so that workers started after the first one count too. */
#define STATS_MAX_ROOTS 64
#define STATS_MAX_PROCS 1024

struct stats_proc {
	pid_t pid;
	unsigned long long start;  /* starttime: tells a reused PID from the same process */
	unsigned long long ticks;  /* utime + stime */
	unsigned long long rss_kb; /* VmRSS */
};

struct stats_sample {
	struct stats_proc p[STATS_MAX_PROCS];
	size_t n;
};

/* Reads /proc for roots and their descendants. Returns the number of processes found. */
size_t stats_sample(const pid_t *roots, size_t nroots, struct stats_sample *out);
/* CPU microseconds the processes spent between two samples: a process present in both
 * counts its difference, one born in between all of its time, one that died is lost. */
double stats_cpu_us(const struct stats_sample *before, const struct stats_sample *after);
unsigned long long stats_rss_kb(const struct stats_sample *s);

#endif
