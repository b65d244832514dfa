/* mailedge: TLS edge for mail servers. Start-up order: parse the config, build every
 * TLS context (keys are read here, never later), bind, drop privileges, then serve on
 * one libev loop until SIGTERM/SIGINT, which drains sessions for a bounded time. */
#include <errno.h>
#include <getopt.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <ev.h>

#include "../protocols/protocol.h"
#include "config.h"
#include "listener.h"
#include "log.h"
#include "probe.h"
#include "relay.h"
#include "tls.h"
#include "version.h"

#define DEFAULT_CONFIG "/etc/mailedge/mailedge.ini"

struct server {
	struct ev_loop *loop;
	struct config *cfg;
	struct listener *listeners;
	struct probe *probes[64];
	int nprobes;
	struct service_stats stats;
	ev_signal sigterm, sigint;
	ev_timer shutdown_timer;
	int stopping;
};

static void
usage(FILE *f)
{
	fprintf(f, "usage: mailedge [-c FILE] [-t] [-V]\n"
	           "  -c FILE  configuration file (default " DEFAULT_CONFIG ")\n"
	           "  -t       check the configuration (certificates and keys included) and exit\n"
	           "  -V       print version and TLS library information and exit\n");
}

static void
report_to_config(void *arg, int line, const char *msg)
{
	config_error(arg, line, "%s", msg);
}

/* Build one TLS context per listener; report problems into the config's error list. */
static struct listener *
build_listeners(struct config *cfg, struct ev_loop *loop, struct service_stats *stats)
{
	struct listener *head = NULL, **tail = &head;

	for (struct cfg_listener *cl = cfg->listeners; cl; cl = cl->next) {
		struct listener *l = calloc(1, sizeof(*l));
		if (l == NULL)
			break;
		l->fd = -1;
		l->svc.cfg = cl;
		l->svc.loop = loop;
		l->svc.stats = stats;
		l->max_connections = cfg->max_connections;
		l->svc.ctx = tls_ctx_new(cl, report_to_config, cfg);
		l->svc.pcfg.level = (enum proto_level)cl->security_level;
		l->svc.pcfg.implicit_tls = cl->tls == TLS_MODE_IMPLICIT;
		l->svc.pcfg.hostname = cl->hostname;
		l->svc.pcfg.greeting = cl->greeting;
		l->svc.pcfg.caps = cl->capabilities; /* NULL: learned by the probe */
		if (cl->backend != NULL)
			l->svc.pcfg.identity =
			    cl->backend->identity == IDENT_XCLIENT   ? PROTO_IDENT_XCLIENT
			    : cl->backend->identity == IDENT_IMAP_ID ? PROTO_IDENT_IMAP_ID
			                                             : PROTO_IDENT_NONE;
		*tail = l;
		tail = &l->next;
	}
	return head;
}

static void
free_listeners(struct listener *l)
{
	while (l) {
		struct listener *n = l->next;
		if (l->fd >= 0)
			close(l->fd);
		if (l->svc.ctx)
			wolfSSL_CTX_free(l->svc.ctx);
		free(l);
		l = n;
	}
}

static int
print_errors(const struct config *cfg)
{
	for (size_t i = 0; i < cfg->nerrors; i++)
		fprintf(stderr, "%s\n", cfg->errors[i]);
	return cfg->nerrors ? 1 : 0;
}

static int
drop_privileges(const char *user)
{
	struct passwd *pw = getpwnam(user);

	if (pw == NULL) {
		log_error("user %s: no such user", user);
		return -1;
	}
	if (setgroups(0, NULL) != 0 || setgid(pw->pw_gid) != 0 || setuid(pw->pw_uid) != 0) {
		log_error("cannot drop privileges to %s: %s", user, strerror(errno));
		return -1;
	}
	if (setuid(0) == 0) {
		log_error("privileges could be regained after dropping them to %s", user);
		return -1;
	}
	return 0;
}

static void
maybe_finish(void *arg)
{
	struct server *srv = arg;
	if (srv->stopping && srv->stats.active == 0)
		ev_break(srv->loop, EVBREAK_ALL);
}

static void
shutdown_timeout_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct server *srv = w->data;
	(void)revents;
	log_warn("shutdown: %d sessions still open after %.0fs; closing them", srv->stats.active,
	         srv->cfg->shutdown_timeout);
	ev_break(loop, EVBREAK_ALL);
}

static void
signal_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
	struct server *srv = w->data;
	(void)revents;

	if (srv->stopping) {
		log_warn("second signal: exiting now");
		ev_break(loop, EVBREAK_ALL);
		return;
	}
	srv->stopping = 1;
	log_info("received %s: no longer accepting; draining %d sessions (at most %.0fs)",
	         strsignal(w->signum), srv->stats.active, srv->cfg->shutdown_timeout);
	for (struct listener *l = srv->listeners; l; l = l->next)
		listener_stop(l);
	for (int i = 0; i < srv->nprobes; i++)
		probe_stop(srv->probes[i]);
	srv->nprobes = 0;
	ev_timer_init(&srv->shutdown_timer, shutdown_timeout_cb, srv->cfg->shutdown_timeout, 0.0);
	srv->shutdown_timer.data = srv;
	ev_timer_start(loop, &srv->shutdown_timer);
	maybe_finish(srv);
}

static void
raise_fd_limit(void)
{
	struct rlimit rl;

	/* Two descriptors per session: use what the hard limit allows. */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

int
main(int argc, char **argv)
{
	const char *path = DEFAULT_CONFIG;
	int check = 0, opt, rc = 1;
	struct server srv;
	char info[256];

	while ((opt = getopt(argc, argv, "c:tVh")) != -1) {
		switch (opt) {
		case 'c':
			path = optarg;
			break;
		case 't':
			check = 1;
			break;
		case 'V':
			tls_version_info(info, sizeof(info));
			printf("mailedge %s\n%s\n", MAILEDGE_VERSION, info);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}

	memset(&srv, 0, sizeof(srv));
	if (tls_global_init() != 0) {
		fprintf(stderr, "mailedge: cannot initialise wolfSSL\n");
		return 1;
	}
	srv.cfg = config_load(path);
	if (srv.cfg == NULL) {
		fprintf(stderr, "mailedge: out of memory\n");
		return 1;
	}
	srv.loop = ev_default_loop(EVFLAG_AUTO);
	srv.stats.on_session_closed = maybe_finish;
	srv.stats.arg = &srv;
	/* Certificates are checked even when other lines are wrong: report everything at once. */
	srv.listeners = build_listeners(srv.cfg, srv.loop, &srv.stats);
	if (print_errors(srv.cfg) != 0) {
		fprintf(stderr, "mailedge: %s: %zu problem%s found\n", path, srv.cfg->nerrors,
		        srv.cfg->nerrors == 1 ? "" : "s");
		goto out;
	}
	if (check) {
		printf("mailedge: %s: configuration OK\n", path);
		rc = 0;
		goto out;
	}

	log_setup(srv.cfg->log_level, srv.cfg->syslog);
	raise_fd_limit();
	signal(SIGPIPE, SIG_IGN);
	for (struct listener *l = srv.listeners; l; l = l->next) {
		char err[256];
		if (listener_open(l, err, sizeof(err)) != 0) {
			log_error("%s", err);
			goto out;
		}
	}
	if (srv.cfg->user != NULL && drop_privileges(srv.cfg->user) != 0)
		goto out;

	ev_signal_init(&srv.sigterm, signal_cb, SIGTERM);
	ev_signal_init(&srv.sigint, signal_cb, SIGINT);
	srv.sigterm.data = srv.sigint.data = &srv;
	ev_signal_start(srv.loop, &srv.sigterm);
	ev_signal_start(srv.loop, &srv.sigint);
	for (struct listener *l = srv.listeners; l; l = l->next) {
		const struct cfg_listener *cl = l->svc.cfg;
		char addr[80];
		listener_start(l);
		log_info("[listener %s]: %s %s on %s -> [backend %s] %s", cl->name, cl->proto->name,
		         cl->tls == TLS_MODE_IMPLICIT            ? "implicit TLS"
		         : cl->security_level == PROTO_LEVEL_MAY ? "STARTTLS (may)"
		                                                 : "STARTTLS (encrypt)",
		         config_addr_str(&cl->listen, addr, sizeof(addr)), cl->backend->name,
		         cl->backend->address);
		if (cl->tls == TLS_MODE_STARTTLS && cl->capabilities == NULL &&
		    srv.nprobes < (int)(sizeof(srv.probes) / sizeof(srv.probes[0])))
			srv.probes[srv.nprobes++] = probe_start(&l->svc);
	}
	tls_version_info(info, sizeof(info));
	log_info("mailedge %s started (%s)", MAILEDGE_VERSION, info);
	ev_run(srv.loop, 0);
	log_info("mailedge stopped: %llu sessions served, %llu TLS handshakes, %llu failed, "
	         "%llu STARTTLS, %llu plaintext, %llu with bytes discarded after STARTTLS",
	         (unsigned long long)srv.stats.accepted, (unsigned long long)srv.stats.handshakes,
	         (unsigned long long)srv.stats.handshake_failures,
	         (unsigned long long)srv.stats.starttls,
	         (unsigned long long)srv.stats.plaintext_sessions,
	         (unsigned long long)srv.stats.starttls_discarded);
	srv.stats.on_session_closed = NULL;
	session_close_all("shutdown");
	for (int i = 0; i < srv.nprobes; i++)
		probe_stop(srv.probes[i]);
	relay_pool_drain();
	rc = 0;
out:
	free_listeners(srv.listeners);
	config_free(srv.cfg);
	tls_global_cleanup();
	return rc;
}
