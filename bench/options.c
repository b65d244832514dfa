#include "options.h"

#include <getopt.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/ssl.h>

/* HOST:PORT (IPv6 as [addr]:port) or, without a port, a bare address; numeric only, so
 * nothing here waits on a resolver. */
static int
parse_addr(const char *spec, int with_port, struct sockaddr_storage *ss, socklen_t *len)
{
	char host[128];
	const char *port = NULL;
	struct addrinfo hints = {0}, *ai;

	if (with_port) {
		const char *colon = strrchr(spec, ':');
		if (colon == NULL || (size_t)(colon - spec) >= sizeof(host))
			return -1;
		const char *h = spec;
		size_t hl = (size_t)(colon - spec);
		if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
			h++;
			hl -= 2;
		}
		memcpy(host, h, hl);
		host[hl] = '\0';
		port = colon + 1;
	} else {
		if (strlen(spec) >= sizeof(host))
			return -1;
		strcpy(host, spec);
	}
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
	if (getaddrinfo(host, port, &hints, &ai) != 0)
		return -1;
	memcpy(ss, ai->ai_addr, ai->ai_addrlen);
	*len = ai->ai_addrlen;
	freeaddrinfo(ai);
	return 0;
}

static int
parse_list(char *arg, struct options *o, int (*each)(struct options *o, const char *item))
{
	for (char *save = NULL, *tok = strtok_r(arg, ",", &save); tok != NULL;
	     tok = strtok_r(NULL, ",", &save))
		if (each(o, tok) < 0)
			return -1;
	return 0;
}

static int
add_pid(struct options *o, const char *s)
{
	char *end;
	long v = strtol(s, &end, 10);
	if (*end != '\0' || v <= 0 || o->npids >= STATS_MAX_ROOTS)
		return -1;
	o->pids[o->npids++] = (pid_t)v;
	return 0;
}

static int
add_src(struct options *o, const char *s)
{
	if (o->nsrc >= OPTIONS_MAX_SRC ||
	    parse_addr(s, 0, &o->src[o->nsrc], &o->srclen[o->nsrc]) < 0)
		return -1;
	o->nsrc++;
	return 0;
}

static double
num(const char *opt, const char *s, double lo, double hi)
{
	char *end;
	double v = strtod(s, &end);
	if (*end != '\0' || !(v >= lo && v <= hi)) {
		fprintf(stderr, "loadgen: %s: expected a number in %g..%g\n", opt, lo, hi);
		exit(2);
	}
	return v;
}

static void
usage(void)
{
	fprintf(stderr,
	        "usage: loadgen MODE --connect HOST:PORT [-c CONC] [-n COUNT] [-t SECONDS] [--ca "
	        "FILE]\n"
	        "       [--pids PID[,PID...]] [--streams N] [--hold N] [--src ADDR[,ADDR...]]\n"
	        "       [--tls13|--tls12] [--plain-openssl]\n"
	        "MODE: handshake starttls-smtp starttls-imap starttls-pop3 resume13 resume12\n"
	        "      bulk-up bulk-down idle\n");
	exit(2);
}

void
options_parse(int argc, char **argv, struct options *o)
{
	enum { O_CONNECT = 256, O_CA, O_PIDS, O_STREAMS, O_HOLD, O_SRC, O_TLS13, O_TLS12, O_PLAIN };
	static const struct option opts[] = {{"connect", required_argument, NULL, O_CONNECT},
	                                     {"ca", required_argument, NULL, O_CA},
	                                     {"pids", required_argument, NULL, O_PIDS},
	                                     {"streams", required_argument, NULL, O_STREAMS},
	                                     {"hold", required_argument, NULL, O_HOLD},
	                                     {"src", required_argument, NULL, O_SRC},
	                                     {"tls13", no_argument, NULL, O_TLS13},
	                                     {"tls12", no_argument, NULL, O_TLS12},
	                                     {"plain-openssl", no_argument, NULL, O_PLAIN},
	                                     {"help", no_argument, NULL, 'h'},
	                                     {NULL, 0, NULL, 0}};
	int opt, have_t = 0;

	memset(o, 0, sizeof(*o));

	if (argc < 2 || argv[1][0] == '-')
		usage();
	for (size_t i = 0; modes[i].name != NULL; i++)
		if (strcmp(argv[1], modes[i].name) == 0)
			o->mode = &modes[i];
	if (o->mode == NULL) {
		fprintf(stderr, "loadgen: unknown mode %s\n", argv[1]);
		usage();
	}
	o->conc = 1;
	o->seconds = 10;
	optind = 2;
	while ((opt = getopt_long(argc, argv, "c:n:t:h", opts, NULL)) != -1) {
		switch (opt) {
		case 'c':
			o->conc = (int)num("-c", optarg, 1, 100000);
			break;
		case 'n':
			o->count = (long long)num("-n", optarg, 1, 1e12);
			break;
		case 't':
			o->seconds = num("-t", optarg, 0.1, 86400);
			have_t = 1;
			break;
		case O_CONNECT:
			o->connect = optarg;
			break;
		case O_CA:
			o->ca = optarg;
			break;
		case O_PIDS:
			if (parse_list(optarg, o, add_pid) < 0) {
				fprintf(stderr, "loadgen: --pids: bad PID list (at most %d)\n",
				        STATS_MAX_ROOTS);
				exit(2);
			}
			break;
		case O_STREAMS:
			o->streams = (int)num("--streams", optarg, 1, 10000);
			break;
		case O_HOLD:
			o->hold = (int)num("--hold", optarg, 1, OPTIONS_MAX_HOLD);
			break;
		case O_SRC:
			if (parse_list(optarg, o, add_src) < 0) {
				fprintf(stderr, "loadgen: --src: bad address list (at most %d)\n",
				        OPTIONS_MAX_SRC);
				exit(2);
			}
			break;
		case O_TLS13:
			o->version = TLS1_3_VERSION;
			break;
		case O_TLS12:
			o->version = TLS1_2_VERSION;
			break;
		case O_PLAIN:
			o->plain_openssl = 1;
			break;
		default:
			usage();
		}
	}
	if (optind != argc || o->connect == NULL)
		usage();
	if (parse_addr(o->connect, 1, &o->dst, &o->dstlen) < 0) {
		fprintf(stderr, "loadgen: --connect %s: expected HOST:PORT\n", o->connect);
		exit(2);
	}
	if (o->count > 0 && !have_t)
		o->seconds = OPTIONS_SAFETY_T;
	if (o->mode->version != 0)
		o->version = o->mode->version;
	if (o->streams == 0)
		o->streams = o->conc;
	if (o->hold == 0)
		o->hold = 1000;
}
