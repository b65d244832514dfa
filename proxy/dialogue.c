#include "dialogue.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

/* Reads per step: a client pipelining a flood of commands cannot starve the loop. */
#define DIALOGUE_MAX_READS 8

struct dialogue *
dialogue_new(const struct protocol *proto, const struct proto_config *cfg, void *state)
{
	struct dialogue *d = calloc(1, sizeof(*d) + proto->max_line);

	if (d == NULL)
		return NULL;
	d->proto = proto;
	d->cfg = cfg;
	d->state = state;
	d->pending = PROTO_CONTINUE;
	buffer_init(&d->in, d->mem, proto->max_line);
	return d;
}

void
dialogue_free(struct dialogue *d)
{
	free(d);
}

static void
remember_reply(struct dialogue *d)
{
	size_t n = 0;

	while (n < d->out.len && d->out.data[n] != '\r' && d->out.data[n] != '\n')
		n++;
	if (n > 0)
		log_sanitize(d->last_reply, sizeof(d->last_reply), d->out.data, n);
}

void
dialogue_greet(struct dialogue *d)
{
	d->proto->greeting(d->state, d->cfg, &d->out);
}

void
dialogue_say_and_flush(struct dialogue *d, int fd, const char *reply)
{
	ssize_t n;

	d->out.len = d->out_off = 0;
	proto_out_add(&d->out, reply, strlen(reply));
	remember_reply(d);
	/* Best effort, one try: the session closes right after. */
	n = write(fd, d->out.data, d->out.len);
	(void)n;
}

/* Throw away everything the client sent after STARTTLS that has already arrived. This
 * happens before the ready reply is written: a well-behaved client cannot have sent
 * anything yet, so nothing legitimate (its ClientHello) can be lost. */
static void
drain_socket(struct dialogue *d, int fd)
{
	unsigned char junk[4096];
	ssize_t n;

	d->discarded += buffer_len(&d->in);
	buffer_reset(&d->in);
	for (int i = 0; i < 64; i++) {
		n = read(fd, junk, sizeof(junk));
		if (n <= 0)
			break;
		d->discarded += (size_t)n;
	}
}

static enum dialogue_event
flush(struct dialogue *d, int fd)
{
	while (d->out_off < d->out.len) {
		ssize_t n = write(fd, d->out.data + d->out_off, d->out.len - d->out_off);
		if (n > 0) {
			d->out_off += (size_t)n;
		} else if (n < 0 && errno == EINTR) {
			continue;
		} else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			return DLG_WANT_WRITE;
		} else {
			d->err = n < 0 ? errno : EPIPE;
			return DLG_ERROR;
		}
	}
	d->out.len = d->out_off = 0;
	return DLG_WANT_READ;
}

enum dialogue_event
dialogue_step(struct dialogue *d, int fd)
{
	int reads = 0;

	for (;;) {
		enum dialogue_event ev = flush(d, fd);
		const unsigned char *line;
		size_t len;

		if (ev != DLG_WANT_READ)
			return ev;
		switch (d->pending) {
		case PROTO_STARTTLS:
			return DLG_STARTTLS;
		case PROTO_BACKEND:
			return DLG_BACKEND;
		case PROTO_CLOSE:
			return DLG_CLOSE;
		case PROTO_CONTINUE:
			break;
		}

		switch (buffer_getline(&d->in, d->proto->max_line, &line, &len)) {
		case BUFFER_LINE_FOUND:
			d->commands++;
			d->pending = d->proto->client_line(d->state, d->cfg, (const char *)line,
			                                   len, &d->out);
			remember_reply(d);
			if (log_get_level() <= LOG_LVL_DEBUG) {
				char l[128];
				log_sanitize(l, sizeof(l), line, len);
				log_debug("pre-TLS command \"%s\" -> \"%s\"", l, d->last_reply);
			}
			if (d->pending == PROTO_BACKEND)
				break; /* the line stays: it is forwarded to the backend */
			buffer_consume(&d->in, len);
			if (d->pending == PROTO_STARTTLS)
				drain_socket(d, fd);
			break;
		case BUFFER_LINE_TOO_LONG:
			d->out.len = 0;
			proto_out_add(&d->out, d->proto->too_long_reply,
			              strlen(d->proto->too_long_reply));
			remember_reply(d);
			d->pending = PROTO_CLOSE;
			break;
		case BUFFER_LINE_NEED_MORE: {
			ssize_t n;
			if (reads++ >= DIALOGUE_MAX_READS)
				return DLG_WANT_READ; /* level-triggered: we come back at once */
			n = read(fd, buffer_tail(&d->in), buffer_space(&d->in));
			if (n > 0) {
				buffer_produce(&d->in, (size_t)n);
			} else if (n == 0) {
				return DLG_EOF;
			} else if (errno == EAGAIN || errno == EWOULDBLOCK) {
				return DLG_WANT_READ;
			} else if (errno != EINTR) {
				d->err = errno;
				return DLG_ERROR;
			}
			break;
		}
		}
	}
}
