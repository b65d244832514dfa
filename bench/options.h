/* options: loadgen's command line, checked and resolved (addresses, PIDs, defaults). */
#ifndef BENCH_OPTIONS_H
#define BENCH_OPTIONS_H

#include <sys/socket.h>
#include <sys/types.h>

#include "script.h"
#include "stats.h"

#define OPTIONS_MAX_SRC  64
#define OPTIONS_MAX_HOLD 250000
#define OPTIONS_SAFETY_T 600.0 /* the time bound when only -n is given */

struct options {
	const struct mode *mode;
	const char *connect, *ca;
	struct sockaddr_storage dst;
	socklen_t dstlen;
	struct sockaddr_storage src[OPTIONS_MAX_SRC]; /* --src, used round-robin */
	socklen_t srclen[OPTIONS_MAX_SRC];
	int nsrc;
	int conc, streams, hold;
	int version;       /* TLS1_2_VERSION, TLS1_3_VERSION or 0 (either) */
	int plain_openssl; /* diagnostic: without tlsfast's client-side shortcuts */
	long long count;   /* -n, 0 = no limit */
	double seconds;
	pid_t pids[STATS_MAX_ROOTS];
	size_t npids;
};

/* Fills o from argv; on a usage error prints why and exits with status 2. */
void options_parse(int argc, char **argv, struct options *o);

#endif
