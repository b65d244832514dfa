#include "listener.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"

#define ACCEPT_BATCH 64
#define ACCEPT_PAUSE 0.1

int
listener_open(struct listener *l, char *err, size_t errlen)
{
	const struct cfg_listener *c = l->svc.cfg;
	char addr[INET6_ADDRSTRLEN + 16];
	int one = 1;
	int fd = socket(c->listen.ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return -1;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (c->listen.ss.ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, (const struct sockaddr *)&c->listen.ss, c->listen.len) != 0 ||
	    listen(fd, 1024) != 0) {
		snprintf(err, errlen, "[listener %s]: cannot listen on %s: %s", c->name,
		         config_addr_str(&c->listen, addr, sizeof(addr)), strerror(errno));
		close(fd);
		return -1;
	}
	l->fd = fd;
	return 0;
}

static void
pause_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct listener *l = w->data;
	(void)revents;
	if (l->fd >= 0)
		ev_io_start(loop, &l->accept_w);
}

static void
accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct listener *l = w->data;
	(void)revents;

	for (int i = 0; i < ACCEPT_BATCH; i++) {
		struct sockaddr_any peer;
		peer.len = sizeof(peer.ss);
		int fd = accept4(l->fd, (struct sockaddr *)&peer.ss, &peer.len,
		                 SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
			    errno == ENOMEM) {
				/* Out of descriptors: back off instead of spinning on the ready
				 * socket. */
				log_error("[listener %s]: accept: %s: pausing accepts",
				          l->svc.cfg->name, strerror(errno));
				ev_io_stop(loop, w);
				ev_timer_set(&l->pause_w, ACCEPT_PAUSE, 0.0);
				ev_timer_start(loop, &l->pause_w);
			}
			return;
		}
		if (l->svc.stats->active >= l->max_connections) {
			char host[64];
			unsigned port = config_addr_split(&peer, host, sizeof(host));
			log_warn(
			    "[listener %s]: refusing unknown[%s]:%u: max_connections (%d) reached",
			    l->svc.cfg->name, host, port, l->max_connections);
			close(fd);
			continue;
		}
		session_new(&l->svc, fd, &peer);
	}
}

void
listener_start(struct listener *l)
{
	ev_io_init(&l->accept_w, accept_cb, l->fd, EV_READ);
	ev_timer_init(&l->pause_w, pause_cb, ACCEPT_PAUSE, 0.0);
	l->accept_w.data = l->pause_w.data = l;
	ev_io_start(l->svc.loop, &l->accept_w);
}

void
listener_stop(struct listener *l)
{
	ev_io_stop(l->svc.loop, &l->accept_w);
	ev_timer_stop(l->svc.loop, &l->pause_w);
	if (l->fd >= 0)
		close(l->fd);
	l->fd = -1;
}
