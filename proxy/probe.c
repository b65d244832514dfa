#include "probe.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"
#include "buffer.h"
#include "log.h"
#include "proxyproto.h"

#define PROBE_TIMEOUT  10.0
#define PROBE_RETRY    30.0
#define PROBE_CAPS_MAX 2048
#define PROBE_IN_MAX   4096

struct probe {
	struct service *svc;
	int fd;
	int addr_idx;
	ev_io io;
	ev_timer timer; /* timeout while running, next refresh while idle */
	struct buffer in;
	size_t out_off;
	int done; /* PROTO_P_DONE seen: QUIT is being written */
	int connected;
	struct proto_out out;
	char caps[PROBE_CAPS_MAX];
	char learned[PROBE_CAPS_MAX]; /* what svc->pcfg.caps points at */
	unsigned char inbuf[PROBE_IN_MAX];
	_Alignas(max_align_t) unsigned char pstate[];
};

static void probe_begin(struct probe *p);

static void
probe_end(struct probe *p, int ok, const char *why)
{
	struct ev_loop *loop = p->svc->loop;
	const struct cfg_listener *c = p->svc->cfg;

	ev_io_stop(loop, &p->io);
	ev_timer_stop(loop, &p->timer);
	if (p->fd >= 0)
		close(p->fd);
	p->fd = -1;
	if (ok) {
		/* A backend with no extensions at all: "\n" is an empty list, where "" would
		 * mean "use the protocol's defaults". */
		if (p->caps[0] == '\0')
			strcpy(p->caps, "\n");
		if (strcmp(p->learned, p->caps) != 0) {
			char shown[512];
			memcpy(p->learned, p->caps, sizeof(p->learned));
			p->svc->pcfg.caps = p->learned;
			/* One line for the log: capabilities separated by ", ". */
			size_t o = 0;
			for (const char *q = p->learned; *q && o + 3 < sizeof(shown); q++) {
				if (*q == '\n') {
					if (q[1] != '\0') {
						shown[o++] = ',';
						shown[o++] = ' ';
					}
				} else {
					shown[o++] = *q;
				}
			}
			shown[o] = '\0';
			log_info("[listener %s]: backend [backend %s] capabilities: %s", c->name,
			         c->backend->name, shown);
		}
		ev_timer_set(&p->timer, c->capabilities_refresh, 0.0);
	} else {
		log_warn("[listener %s]: capability probe of [backend %s] failed: %s; %s", c->name,
		         c->backend->name, why,
		         p->svc->pcfg.caps ? "keeping the last list" : "offering the default list");
		ev_timer_set(&p->timer, PROBE_RETRY, 0.0);
	}
	ev_timer_start(loop, &p->timer);
}

static void
probe_io(struct probe *p)
{
	const struct protocol *proto = p->svc->cfg->proto;

	for (int round = 0; round < 64; round++) {
		const unsigned char *line;
		size_t len;

		while (p->out_off < p->out.len) {
			ssize_t n = write(p->fd, p->out.data + p->out_off, p->out.len - p->out_off);
			if (n > 0) {
				p->out_off += (size_t)n;
			} else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
				ev_io_stop(p->svc->loop, &p->io);
				ev_io_set(&p->io, p->fd, EV_WRITE);
				ev_io_start(p->svc->loop, &p->io);
				return;
			} else {
				probe_end(p, p->done, "write failed");
				return;
			}
		}
		p->out.len = p->out_off = 0;
		if (p->done) {
			probe_end(p, 1, NULL);
			return;
		}
		switch (buffer_getline(&p->in, sizeof(p->inbuf), &line, &len)) {
		case BUFFER_LINE_FOUND: {
			enum proto_probe r =
			    proto->probe_line(p->pstate, &p->svc->pcfg, (const char *)line, len,
			                      &p->out, p->caps, sizeof(p->caps));
			buffer_consume(&p->in, len);
			if (r == PROTO_P_FAIL) {
				probe_end(p, 0, "unexpected reply");
				return;
			}
			if (r == PROTO_P_DONE)
				p->done = 1;
			break;
		}
		case BUFFER_LINE_TOO_LONG:
			probe_end(p, 0, "line too long");
			return;
		case BUFFER_LINE_NEED_MORE: {
			ssize_t n = read(p->fd, buffer_tail(&p->in), buffer_space(&p->in));
			if (n > 0) {
				buffer_produce(&p->in, (size_t)n);
			} else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
				ev_io_stop(p->svc->loop, &p->io);
				ev_io_set(&p->io, p->fd, EV_READ);
				ev_io_start(p->svc->loop, &p->io);
				return;
			} else {
				probe_end(p, 0, n == 0 ? "connection closed" : strerror(errno));
				return;
			}
			break;
		}
		}
	}
}

static void
io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct probe *p = w->data;
	int err = 0;
	(void)loop;
	(void)revents;

	if (!p->connected) {
		/* First writability: the connect finished. */
		p->connected = 1;
		if (backend_connect_finish(p->fd, &err) != 0) {
			close(p->fd);
			p->fd = -1;
			ev_io_stop(loop, w);
			probe_begin(p);
			return;
		}
	}
	probe_io(p);
}

static void
timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct probe *p = w->data;
	(void)loop;
	(void)revents;

	if (p->fd >= 0)
		probe_end(p, 0, "timed out");
	else {
		p->addr_idx = 0;
		probe_begin(p);
	}
}

/* A backend that expects PROXY headers expects one from us too. v2: LOCAL ("a
 * connection of the proxy's own"). v1 has no such command that Postfix accepts
 * ("PROXY UNKNOWN" is refused), so the probe states its own socket's addresses. */
static void
probe_proxy_header(struct probe *p, const struct sockaddr_any *dst)
{
	const struct cfg_backend *b = p->svc->cfg->backend;
	struct proxyproto_addrs a;
	struct proxyproto_tls t;

	memset(&a, 0, sizeof(a));
	memset(&t, 0, sizeof(t));
	a.local = 1;
	if (b->identity == IDENT_PROXY_V1) {
		a.src_len = sizeof(a.src);
		if (getsockname(p->fd, (struct sockaddr *)&a.src, &a.src_len) == 0) {
			a.local = 0;
			memcpy(&a.dst, &dst->ss, dst->len);
			a.dst_len = dst->len;
		}
		p->out.len = proxyproto_encode_v1(&a, p->out.data, sizeof(p->out.data));
	} else {
		p->out.len =
		    proxyproto_encode_v2(&a, &t, (uint8_t *)p->out.data, sizeof(p->out.data));
	}
}

/* Connect to the next backend address and run the protocol's probe dialogue. */
static void
probe_begin(struct probe *p)
{
	const struct cfg_backend *b = p->svc->cfg->backend;
	const struct protocol *proto = p->svc->cfg->proto;
	int err = 0;

	buffer_reset(&p->in);
	p->out.len = p->out_off = 0;
	p->done = 0;
	p->connected = 0;
	p->caps[0] = '\0';
	proto->probe_init(p->pstate, &p->svc->pcfg);
	while (p->addr_idx < b->naddrs) {
		const struct sockaddr_any *dst = &b->addrs[p->addr_idx++];
		enum backend_connect r = backend_connect_start(dst, &p->fd, &err);
		if (r == BACKEND_FAILED)
			continue;
		if (b->identity == IDENT_PROXY_V1 || b->identity == IDENT_PROXY_V2)
			probe_proxy_header(p, dst);
		ev_timer_stop(p->svc->loop, &p->timer);
		ev_timer_set(&p->timer, PROBE_TIMEOUT, 0.0);
		ev_timer_start(p->svc->loop, &p->timer);
		p->connected = r == BACKEND_CONNECTED;
		ev_io_set(&p->io, p->fd,
		          r == BACKEND_CONNECTED && p->out.len == 0 ? EV_READ : EV_WRITE);
		ev_io_start(p->svc->loop, &p->io);
		return;
	}
	p->fd = -1;
	probe_end(p, 0, err ? strerror(err) : "no address");
}

struct probe *
probe_start(struct service *svc)
{
	const struct protocol *proto = svc->cfg->proto;
	struct probe *p = calloc(1, sizeof(*p) + proto->probe_state_size);

	if (p == NULL)
		return NULL;
	p->svc = svc;
	p->fd = -1;
	buffer_init(&p->in, p->inbuf, sizeof(p->inbuf));
	ev_io_init(&p->io, io_cb, -1, EV_READ);
	ev_timer_init(&p->timer, timer_cb, PROBE_TIMEOUT, 0.0);
	p->io.data = p->timer.data = p;
	probe_begin(p);
	return p;
}

void
probe_stop(struct probe *p)
{
	if (p == NULL)
		return;
	ev_io_stop(p->svc->loop, &p->io);
	ev_timer_stop(p->svc->loop, &p->timer);
	if (p->fd >= 0)
		close(p->fd);
	free(p);
}
