#include "stats.h"

#include <ctype.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int
stats_lat_init(struct stats_lat *s, size_t cap)
{
	memset(s, 0, sizeof(*s));
	s->v = calloc(cap, sizeof(*s->v));
	if (s->v == NULL)
		return -1;
	s->cap = cap;
	s->rng = 0x9e3779b97f4a7c15ULL;
	return 0;
}

static unsigned long long
xorshift(unsigned long long *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

void
stats_lat_add(struct stats_lat *s, double ms)
{
	s->seen++;
	if (s->len < s->cap) {
		s->v[s->len++] = ms;
		return;
	}
	/* Algorithm R: the n-th sample replaces a random kept one with probability cap/n. */
	unsigned long long j = xorshift(&s->rng) % s->seen;
	if (j < s->cap)
		s->v[j] = ms;
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

double
stats_lat_pct(struct stats_lat *s, double p)
{
	if (s->len == 0)
		return 0;
	qsort(s->v, s->len, sizeof(*s->v), cmp_double);
	/* Nearest rank. */
	size_t rank = (size_t)(p / 100.0 * (double)s->len + 0.999999);
	if (rank < 1)
		rank = 1;
	if (rank > s->len)
		rank = s->len;
	return s->v[rank - 1];
}

void
stats_lat_free(struct stats_lat *s)
{
	free(s->v);
	s->v = NULL;
}

/* Every process on the machine, briefly: pid, ppid and the stat fields we need. */
struct proc_row {
	pid_t pid, ppid;
	unsigned long long start, ticks;
};

static int
read_stat(pid_t pid, struct proc_row *r)
{
	char path[64], buf[1024];
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "re");
	if (f == NULL)
		return -1;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* comm may hold spaces and parentheses: the fields start after the last ')'. */
	char *p = strrchr(buf, ')');
	if (p == NULL)
		return -1;
	unsigned long long ut, st, start;
	int ppid;
	/* state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime
	 * cutime cstime priority nice threads itrealvalue starttime */
	if (sscanf(p + 2,
	           "%*c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d %*d "
	           "%*d %*d %llu",
	           &ppid, &ut, &st, &start) != 4)
		return -1;
	r->pid = pid;
	r->ppid = ppid;
	r->ticks = ut + st;
	r->start = start;
	return 0;
}

static unsigned long long
read_rss_kb(pid_t pid)
{
	char path[64], line[256];
	unsigned long long kb = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "re");
	if (f == NULL)
		return 0;
	while (fgets(line, sizeof(line), f) != NULL)
		if (sscanf(line, "VmRSS: %llu", &kb) == 1)
			break;
	fclose(f);
	return kb;
}

size_t
stats_sample(const pid_t *roots, size_t nroots, struct stats_sample *out)
{
	/* Bounded: at most this many processes on the machine are looked at. */
	enum { MAX_ROWS = 32768 };
	static struct proc_row rows[MAX_ROWS];
	static unsigned char mark[MAX_ROWS];
	size_t nrows = 0;
	DIR *d;
	struct dirent *e;

	out->n = 0;
	if (nroots == 0)
		return 0;
	d = opendir("/proc");
	if (d == NULL)
		return 0;
	while ((e = readdir(d)) != NULL && nrows < MAX_ROWS) {
		if (!isdigit((unsigned char)e->d_name[0]))
			continue;
		if (read_stat((pid_t)atoi(e->d_name), &rows[nrows]) == 0)
			nrows++;
	}
	closedir(d);
	/* The marked PIDs, kept small (STATS_MAX_PROCS) so that finding descendants costs
	 * rows x marked, not rows x rows. */
	static pid_t marked[STATS_MAX_PROCS];
	size_t nmarked = 0;
	memset(mark, 0, nrows);
	for (size_t i = 0; i < nrows; i++)
		for (size_t r = 0; r < nroots && nmarked < STATS_MAX_PROCS; r++)
			if (rows[i].pid == roots[r]) {
				mark[i] = 1;
				marked[nmarked++] = rows[i].pid;
				break;
			}
	/* Descendants: repeat until nothing new is marked (depth is small: master, workers). */
	for (int changed = 1, depth = 0; changed && depth < 16; depth++) {
		changed = 0;
		for (size_t i = 0; i < nrows && nmarked < STATS_MAX_PROCS; i++) {
			if (mark[i])
				continue;
			for (size_t j = 0; j < nmarked; j++)
				if (marked[j] == rows[i].ppid) {
					mark[i] = 1;
					marked[nmarked++] = rows[i].pid;
					changed = 1;
					break;
				}
		}
	}
	for (size_t i = 0; i < nrows && out->n < STATS_MAX_PROCS; i++) {
		if (!mark[i])
			continue;
		struct stats_proc *p = &out->p[out->n++];
		p->pid = rows[i].pid;
		p->start = rows[i].start;
		p->ticks = rows[i].ticks;
		p->rss_kb = read_rss_kb(rows[i].pid);
	}
	return out->n;
}

double
stats_cpu_us(const struct stats_sample *before, const struct stats_sample *after)
{
	long hz = sysconf(_SC_CLK_TCK);
	unsigned long long ticks = 0;

	for (size_t i = 0; i < after->n; i++) {
		unsigned long long base = 0;
		for (size_t j = 0; j < before->n; j++)
			if (before->p[j].pid == after->p[i].pid &&
			    before->p[j].start == after->p[i].start) {
				base = before->p[j].ticks;
				break;
			}
		if (after->p[i].ticks >= base)
			ticks += after->p[i].ticks - base;
	}
	return (double)ticks * 1e6 / (double)(hz > 0 ? hz : 100);
}

unsigned long long
stats_rss_kb(const struct stats_sample *s)
{
	unsigned long long kb = 0;

	for (size_t i = 0; i < s->n; i++)
		kb += s->p[i].rss_kb;
	return kb;
}
