#include "backend.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"

enum backend_connect
backend_connect_start(const struct sockaddr_any *a, int *fd, int *err)
{
	int one = 1;
	int s = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (s < 0) {
		*err = errno;
		return BACKEND_FAILED;
	}
	/* Mail dialogues are small request/response exchanges: never wait for Nagle. */
	setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(s, (const struct sockaddr *)&a->ss, a->len) == 0) {
		*fd = s;
		return BACKEND_CONNECTED;
	}
	if (errno == EINPROGRESS || errno == EINTR) {
		*fd = s;
		return BACKEND_IN_PROGRESS;
	}
	*err = errno;
	close(s);
	return BACKEND_FAILED;
}

int
backend_connect_finish(int fd, int *err)
{
	int soerr = 0;
	socklen_t len = sizeof(soerr);

	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0)
		soerr = errno;
	if (soerr != 0) {
		*err = soerr;
		return -1;
	}
	return 0;
}

#define BACKEND_LINE_MAX 4096

enum backend_dialogue
backend_dialogue_step(struct backend_dlg *b, int fd)
{
	for (int round = 0; round < 64; round++) {
		const unsigned char *line;
		size_t len;

		while (b->out_off < b->out.len) {
			ssize_t n = write(fd, b->out.data + b->out_off, b->out.len - b->out_off);
			if (n > 0)
				b->out_off += (size_t)n;
			else if (n < 0 && errno == EINTR)
				continue;
			else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
				return BDLG_WANT_WRITE;
			else {
				b->err = n < 0 ? errno : EPIPE;
				return BDLG_BROKEN;
			}
		}
		b->out.len = b->out_off = 0;
		if (b->proto == NULL || b->done)
			return BDLG_DONE; /* (no protocol dialogue: only a PROXY header to write) */

		switch (buffer_getline(b->in, BACKEND_LINE_MAX, &line, &len)) {
		case BUFFER_LINE_FOUND: {
			enum proto_bstep st =
			    b->proto->backend_line(b->state, b->cfg, b->peer, (const char *)line,
			                           len, &b->out, &b->to_client);
			log_sanitize(b->why, sizeof(b->why), line,
			             proto_strip_eol((const char *)line, len));
			buffer_consume(b->in, len);
			if (st == PROTO_B_DONE) {
				b->done = 1; /* after writing whatever the protocol queued last */
				continue;
			}
			if (st == PROTO_B_FAIL)
				return BDLG_REFUSED;
			break;
		}
		case BUFFER_LINE_TOO_LONG:
			b->err = EMSGSIZE;
			return BDLG_BROKEN;
		case BUFFER_LINE_NEED_MORE: {
			ssize_t n = read(fd, buffer_tail(b->in), buffer_space(b->in));
			if (n > 0)
				buffer_produce(b->in, (size_t)n);
			else if (n == 0) {
				b->err = ECONNRESET;
				return BDLG_BROKEN;
			} else if (errno == EAGAIN || errno == EWOULDBLOCK)
				return BDLG_WANT_READ;
			else if (errno != EINTR) {
				b->err = errno;
				return BDLG_BROKEN;
			}
			break;
		}
		}
	}
	return BDLG_WANT_READ;
}
