/* sink: the cleartext backend that bench/ puts behind every TLS proxy under test.
 *
 *   sink --listen 127.0.0.1:PORT=MODE [--listen ...]      MODE: smtp imap pop3 discard source
 *
 * The two bulk modes are mail transfers that never end, so that a protocol-aware relay
 * (mailedge, whose filters must find where commands start) and a byte pipe (haproxy,
 * hitch, stunnel) carry exactly the same bytes:
 *   discard  an SMTP submission: greeting, then 250 to every command, 354 to DATA, and
 *            from there on every byte is read and dropped (the message body never ends);
 *   source   an IMAP download: greeting, OK to every command, and FETCH answers one
 *            literal of BULK_LITERAL bytes that is streamed until the client goes away.
 *
 * It must never be what limits a benchmark, so it does the least a protocol peer can do:
 * canned one-line replies, no parsing beyond the command word, one libev loop, non-blocking
 * sockets, TCP_NODELAY. Every buffer is fixed: a command line longer than IN_MAX is dropped,
 * and when replies cannot be written (a client that pipelines but never reads) reading stops
 * until they can, so a connection costs at most sizeof(struct conn) whatever the peer does.
 *
 * Beyond the bench contract's one-liners, the replies a relay needs to stay in sync are
 * real: POP3 CAPA/LIST/UIDL/RETR/TOP answer an empty multi-line body ("+OK" then "."),
 * IMAP CAPABILITY sends its untagged line, and IMAP synchronising literals ({N}) get a
 * "+" continuation (nginx's mail proxy logs in to the backend with literals). Otherwise a
 * proxy that tracks multi-line replies (mailedge, nginx) would wait for a "." forever.
 *
 * Runs until SIGTERM/SIGINT, then prints per-mode totals on stderr. */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ev.h>

#define MAX_LISTENERS 16
#define IN_MAX        2048 /* one command line (RFC 5321 allows 512, IMAP more) */
#define OUT_MAX       512  /* queued replies; reading pauses below REPLY_MAX free */
#define REPLY_MAX     160  /* longest reply one command line can produce */
#define TAG_MAX       64   /* IMAP tag kept across a literal */
#define BULK_LINE     78   /* source payload: 76 characters and CRLF, like base64 mail */
#define BULK_CHUNK    (840 * BULK_LINE) /* 65520: the source buffer, the discard read size */
#define BULK_ROUNDS   16  /* reads/writes per wakeup, so one fast peer cannot starve others */
#define ACCEPT_ROUNDS 64  /* accepts per wakeup */
#define ACCEPT_PAUSE  0.1 /* seconds without accepting after EMFILE/ENOMEM */
#define NOFILE_WANTED 200000
#define BULK_LITERAL  "999999999999999" /* bytes announced by the source FETCH: endless */

enum mode { M_SMTP, M_IMAP, M_POP3, M_DISCARD, M_SOURCE, M_COUNT };
static const char *const mode_names[M_COUNT] = {"smtp", "imap", "pop3", "discard", "source"};

struct totals {
	unsigned long long accepted, bytes_in, bytes_out;
	unsigned long open;
};

struct listener {
	ev_io io;
	ev_timer pause; /* re-arms accepting after descriptor exhaustion */
	int fd;
	enum mode mode;
	char name[96];
};

struct conn {
	ev_io io;
	int fd;
	enum mode mode;
	/* Raw phase: bytes that are not command lines. SMTP DATA looks for CRLF.CRLF
	 * (data_match = how much of it has been seen); an IMAP literal skips `skip` bytes. */
	int in_data;
	int data_match;
	unsigned long skip;
	int in_literal_cmd; /* the current IMAP command continues after a literal */
	int overlong;       /* dropping the rest of a line longer than IN_MAX */
	int close_after;    /* close once `out` is written */
	int bulk;           /* discard/source: the dialogue is over, bytes only from here */
	size_t inlen, outlen, outoff;
	char tag[TAG_MAX];
	char in[IN_MAX];
	char out[OUT_MAX];
};

static struct ev_loop *loop;
static struct totals totals[M_COUNT];
static char bulk[BULK_CHUNK];

static void conn_io_cb(struct ev_loop *l, ev_io *w, int revents);

static void
conn_close(struct conn *c)
{
	ev_io_stop(loop, &c->io);
	close(c->fd);
	totals[c->mode].open--;
	free(c);
}

static void
conn_watch(struct conn *c, int events)
{
	if ((c->io.events & (EV_READ | EV_WRITE)) == events)
		return;
	ev_io_stop(loop, &c->io);
	ev_io_set(&c->io, c->fd, events);
	ev_io_start(loop, &c->io);
}

static void
reply(struct conn *c, const char *s)
{
	size_t n = strlen(s);

	/* The caller checked REPLY_MAX of room; a tag is bounded by TAG_MAX. */
	if (n > OUT_MAX - c->outlen)
		n = OUT_MAX - c->outlen;
	memcpy(c->out + c->outlen, s, n);
	c->outlen += n;
}

/* The first word of a line: pointer and length. */
static const char *
word(const char *p, size_t len, size_t *wlen)
{
	size_t i = 0, j;

	while (i < len && p[i] == ' ')
		i++;
	for (j = i; j < len && p[j] != ' '; j++)
		;
	*wlen = j - i;
	return p + i;
}

static int
is_cmd(const char *w, size_t wlen, const char *name)
{
	return wlen == strlen(name) && strncasecmp(w, name, wlen) == 0;
}

static void
smtp_line(struct conn *c, const char *line, size_t len)
{
	size_t wl;
	const char *w = word(line, len, &wl);

	if (is_cmd(w, wl, "EHLO")) {
		reply(c, "250-sink\r\n250 PIPELINING\r\n");
	} else if (is_cmd(w, wl, "DATA") && c->mode == M_DISCARD) {
		reply(c, "354 go\r\n");
		c->bulk = 1; /* an endless body: drop everything, scan nothing */
	} else if (is_cmd(w, wl, "DATA")) {
		reply(c, "354 go\r\n");
		c->in_data = 1;
		c->data_match = 2; /* the DATA line's CRLF counts: an empty body is ".\r\n" */
	} else if (is_cmd(w, wl, "QUIT")) {
		reply(c, "221 bye\r\n");
		c->close_after = 1;
	} else {
		/* HELO MAIL RCPT RSET NOOP, and anything else: a sink accepts everything. */
		reply(c, "250 ok\r\n");
	}
}

/* "{123}" or "{123+}" at the end of an IMAP line: the literal's size, or -1. */
static long
imap_literal(const char *line, size_t len, int *sync)
{
	size_t i;
	long n = 0;

	if (len < 3 || line[len - 1] != '}')
		return -1;
	i = len - 2;
	*sync = 1;
	if (line[i] == '+') {
		*sync = 0;
		i--;
	}
	size_t end = i + 1;
	while (i > 0 && line[i] >= '0' && line[i] <= '9')
		i--;
	if (line[i] != '{' || i + 1 == end || end - i > 10)
		return -1;
	for (size_t k = i + 1; k < end; k++)
		n = n * 10 + (line[k] - '0');
	return n;
}

static void
imap_line(struct conn *c, const char *line, size_t len)
{
	char buf[REPLY_MAX];
	size_t tl, cl;
	int sync;
	long lit;

	if (!c->in_literal_cmd) {
		const char *t = word(line, len, &tl);
		const char *cmd = word(t + tl, (size_t)(line + len - (t + tl)), &cl);
		if (tl == 0 || tl >= TAG_MAX)
			snprintf(c->tag, sizeof(c->tag), "*");
		else
			snprintf(c->tag, sizeof(c->tag), "%.*s", (int)tl, t);
		if (is_cmd(cmd, cl, "LOGOUT")) {
			snprintf(buf, sizeof(buf), "* BYE\r\n%s OK\r\n", c->tag);
			reply(c, buf);
			c->close_after = 1;
			return;
		}
		if (is_cmd(cmd, cl, "CAPABILITY"))
			reply(c, "* CAPABILITY IMAP4rev1\r\n");
		if (c->mode == M_SOURCE && is_cmd(cmd, cl, "FETCH")) {
			reply(c, "* 1 FETCH (BODY[] {" BULK_LITERAL "}\r\n");
			c->bulk = 1; /* the literal streams from here on, until the client goes */
			return;
		}
	}
	lit = imap_literal(line, len, &sync);
	if (lit >= 0) {
		/* The command goes on after `lit` raw bytes; answer it when its last line ends. */
		c->in_literal_cmd = 1;
		c->skip = (unsigned long)lit;
		if (sync)
			reply(c, "+ go\r\n");
		return;
	}
	c->in_literal_cmd = 0;
	snprintf(buf, sizeof(buf), "%s OK done\r\n", c->tag);
	reply(c, buf);
}

static void
pop3_line(struct conn *c, const char *line, size_t len)
{
	size_t wl, al;
	const char *w = word(line, len, &wl);

	word(w + wl, (size_t)(line + len - (w + wl)), &al);
	if (is_cmd(w, wl, "QUIT")) {
		reply(c, "+OK bye\r\n");
		c->close_after = 1;
	} else if (is_cmd(w, wl, "CAPA") || is_cmd(w, wl, "RETR") || is_cmd(w, wl, "TOP") ||
	           ((is_cmd(w, wl, "LIST") || is_cmd(w, wl, "UIDL")) && al == 0)) {
		reply(c, "+OK\r\n.\r\n"); /* multi-line, empty */
	} else {
		reply(c, "+OK\r\n");
	}
}

/* Raw bytes: an IMAP literal to skip, or an SMTP message up to CRLF.CRLF. Returns how many
 * bytes of p it consumed. */
static size_t
conn_raw(struct conn *c, const char *p, size_t n)
{
	static const char term[] = "\r\n.\r\n";
	size_t i;

	if (c->skip > 0) {
		i = n < c->skip ? n : (size_t)c->skip;
		c->skip -= i;
		return i;
	}
	for (i = 0; i < n; i++) {
		char ch = p[i];
		if (ch == term[c->data_match])
			c->data_match++;
		else
			c->data_match = ch == '\r' ? 1 : 0;
		if (c->data_match == 5) {
			c->in_data = 0;
			c->data_match = 0;
			reply(c, "250 ok\r\n");
			return i + 1;
		}
	}
	return n;
}

/* Handles every complete line in `in` while there is room for its reply. */
static void
conn_process(struct conn *c)
{
	size_t off = 0;

	while (off < c->inlen && !c->close_after && !c->bulk && OUT_MAX - c->outlen >= REPLY_MAX) {
		if (c->in_data || c->skip > 0) {
			off += conn_raw(c, c->in + off, c->inlen - off);
			continue;
		}
		char *nl = memchr(c->in + off, '\n', c->inlen - off);
		if (nl == NULL)
			break;
		size_t len = (size_t)(nl - (c->in + off));
		if (c->overlong) {
			c->overlong = 0;
		} else {
			if (len > 0 && c->in[off + len - 1] == '\r')
				len--;
			if (c->mode == M_SMTP || c->mode == M_DISCARD)
				smtp_line(c, c->in + off, len);
			else if (c->mode == M_IMAP || c->mode == M_SOURCE)
				imap_line(c, c->in + off, len);
			else
				pop3_line(c, c->in + off, len);
		}
		off = (size_t)(nl - c->in) + 1;
	}
	memmove(c->in, c->in + off, c->inlen - off);
	c->inlen -= off;
	if (c->inlen == IN_MAX && !c->in_data && c->skip == 0 &&
	    memchr(c->in, '\n', c->inlen) == NULL) {
		/* No newline in a full buffer: drop the line rather than grow. */
		c->inlen = 0;
		c->overlong = 1;
	}
}

/* Writes queued replies. Returns -1 if the connection was closed. */
static int
conn_flush(struct conn *c)
{
	while (c->outoff < c->outlen) {
		ssize_t n = send(c->fd, c->out + c->outoff, c->outlen - c->outoff, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				break;
			conn_close(c);
			return -1;
		}
		c->outoff += (size_t)n;
		totals[c->mode].bytes_out += (unsigned long long)n;
	}
	if (c->outoff == c->outlen) {
		c->outoff = c->outlen = 0;
		if (c->close_after) {
			conn_close(c);
			return -1;
		}
	}
	return 0;
}

/* Line modes: read, answer, write; reading pauses while replies are stuck. */
static void
conn_dialogue(struct conn *c, int revents)
{
	if ((revents & EV_WRITE) && conn_flush(c) < 0)
		return;
	if ((revents & EV_READ) && c->outlen == 0 && !c->close_after && c->inlen < IN_MAX) {
		ssize_t n = read(c->fd, c->in + c->inlen, IN_MAX - c->inlen);
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
			conn_close(c);
			return;
		}
		if (n > 0) {
			c->inlen += (size_t)n;
			totals[c->mode].bytes_in += (unsigned long long)n;
		}
	}
	for (;;) {
		conn_process(c);
		if (conn_flush(c) < 0)
			return;
		/* Flushed everything but lines are still waiting for reply room: go on. */
		if (c->outlen != 0 || c->close_after || c->inlen == 0 || c->bulk)
			break;
		if (!c->in_data && c->skip == 0 && memchr(c->in, '\n', c->inlen) == NULL)
			break;
	}
	if (c->bulk && c->outlen == 0) {
		/* The bulk phase starts: input after DATA or FETCH is body or ignored. */
		c->inlen = 0;
		conn_watch(c, c->mode == M_SOURCE ? EV_READ | EV_WRITE : EV_READ);
		return;
	}
	conn_watch(c, c->outlen > 0 ? EV_WRITE : EV_READ);
}

static void
conn_bulk(struct conn *c, int revents)
{
	static char scratch[BULK_CHUNK];

	if (revents & EV_READ) {
		for (int i = 0; i < BULK_ROUNDS; i++) {
			ssize_t n = read(c->fd, scratch, sizeof(scratch));
			if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
				conn_close(c);
				return;
			}
			if (n < 0)
				break;
			totals[c->mode].bytes_in += (unsigned long long)n;
			if ((size_t)n < sizeof(scratch))
				break;
		}
	}
	if (c->mode == M_SOURCE && (revents & EV_WRITE)) {
		for (int i = 0; i < BULK_ROUNDS; i++) {
			ssize_t n = send(c->fd, bulk, sizeof(bulk), MSG_NOSIGNAL);
			if (n < 0 && (errno == EAGAIN || errno == EINTR))
				break;
			if (n < 0) {
				conn_close(c);
				return;
			}
			totals[c->mode].bytes_out += (unsigned long long)n;
			if ((size_t)n < sizeof(bulk))
				break;
		}
	}
}

static void
conn_io_cb(struct ev_loop *l, ev_io *w, int revents)
{
	struct conn *c = w->data;

	(void)l;
	if (c->bulk && c->outlen == 0)
		conn_bulk(c, revents);
	else
		conn_dialogue(c, revents);
}

static const char *
greeting(enum mode m)
{
	switch (m) {
	case M_SMTP:
	case M_DISCARD:
		return "220 sink ESMTP\r\n";
	case M_IMAP:
	case M_SOURCE:
		return "* OK sink ready\r\n";
	case M_POP3:
		return "+OK sink\r\n";
	default:
		return NULL;
	}
}

static void
conn_new(struct listener *l, int fd)
{
	struct conn *c;
	int one = 1;

	c = calloc(1, sizeof(*c));
	if (c == NULL) {
		close(fd);
		return;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->fd = fd;
	c->mode = l->mode;
	c->io.data = c;
	totals[c->mode].accepted++;
	totals[c->mode].open++;
	ev_io_init(&c->io, conn_io_cb, fd, 0);
	reply(c, greeting(c->mode));
	if (conn_flush(c) == 0)
		conn_watch(c, c->outlen > 0 ? EV_WRITE : EV_READ);
}

static void
accept_cb(struct ev_loop *l, ev_io *w, int revents)
{
	struct listener *li = w->data;

	(void)revents;
	for (int i = 0; i < ACCEPT_ROUNDS; i++) {
		int fd = accept4(li->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd >= 0) {
			conn_new(li, fd);
			continue;
		}
		if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
			/* Level-triggered accept would spin: pause, and let closes free slots. */
			fprintf(stderr, "sink: %s: accept: %s (pausing)\n", li->name,
			        strerror(errno));
			ev_io_stop(l, &li->io);
			ev_timer_start(l, &li->pause);
		}
		break;
	}
}

static void
pause_cb(struct ev_loop *l, ev_timer *w, int revents)
{
	struct listener *li = w->data;

	(void)revents;
	ev_io_start(l, &li->io);
}

/* "HOST:PORT=MODE", HOST an IPv4 literal or [IPv6]. */
static int
listener_open(struct listener *li, const char *spec)
{
	char host[64], port[16];
	const char *eq = strrchr(spec, '='), *colon;
	struct addrinfo hints = {0}, *ai;
	int one = 1, m;

	if (eq == NULL)
		return fprintf(stderr, "sink: --listen %s: expected HOST:PORT=MODE\n", spec), -1;
	for (m = 0; m < M_COUNT; m++)
		if (strcmp(eq + 1, mode_names[m]) == 0)
			break;
	if (m == M_COUNT)
		return fprintf(stderr, "sink: --listen %s: unknown mode\n", spec), -1;
	colon = memrchr(spec, ':', (size_t)(eq - spec));
	if (colon == NULL || (size_t)(colon - spec) >= sizeof(host) ||
	    (size_t)(eq - colon - 1) >= sizeof(port) || eq == colon + 1)
		return fprintf(stderr, "sink: --listen %s: expected HOST:PORT=MODE\n", spec), -1;
	const char *h = spec;
	size_t hl = (size_t)(colon - spec);
	if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
		h++;
		hl -= 2;
	}
	memcpy(host, h, hl);
	host[hl] = '\0';
	memcpy(port, colon + 1, (size_t)(eq - colon - 1));
	port[eq - colon - 1] = '\0';
	hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE;
	hints.ai_socktype = SOCK_STREAM;
	if (getaddrinfo(host, port, &hints, &ai) != 0)
		return fprintf(stderr, "sink: --listen %s: bad address\n", spec), -1;
	li->fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (li->fd < 0 || setsockopt(li->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(li->fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(li->fd, SOMAXCONN) < 0) {
		fprintf(stderr, "sink: --listen %s: %s\n", spec, strerror(errno));
		freeaddrinfo(ai);
		return -1;
	}
	freeaddrinfo(ai);
	li->mode = (enum mode)m;
	snprintf(li->name, sizeof(li->name), "%s", spec);
	li->io.data = li;
	li->pause.data = li;
	ev_io_init(&li->io, accept_cb, li->fd, EV_READ);
	ev_timer_init(&li->pause, pause_cb, ACCEPT_PAUSE, 0.0);
	ev_io_start(loop, &li->io);
	return 0;
}

static void
stop_cb(struct ev_loop *l, ev_signal *w, int revents)
{
	(void)w;
	(void)revents;
	ev_break(l, EVBREAK_ALL);
}

/* Thousands of held sessions need thousands of descriptors: ask for many, settle for the
 * hard limit when not allowed to raise it. */
static void
raise_nofile(void)
{
	struct rlimit rl = {NOFILE_WANTED, NOFILE_WANTED};

	if (setrlimit(RLIMIT_NOFILE, &rl) == 0)
		return;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

int
main(int argc, char **argv)
{
	static struct listener listeners[MAX_LISTENERS];
	int n = 0;
	ev_signal sigterm, sigint;

	loop = EV_DEFAULT;
	/* Mail-shaped lines rather than one endless line: relays that look at lines (to
	 * filter STARTTLS or capabilities) carry what they would carry in service. */
	for (size_t i = 0; i < sizeof(bulk); i++)
		bulk[i] = i % BULK_LINE == BULK_LINE - 2   ? '\r'
		          : i % BULK_LINE == BULK_LINE - 1 ? '\n'
		                                           : (char)('a' + i % BULK_LINE % 26);
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--listen") == 0 && i + 1 < argc && n < MAX_LISTENERS) {
			if (listener_open(&listeners[n++], argv[++i]) < 0)
				return 1;
		} else {
			fprintf(stderr,
			        "usage: sink --listen HOST:PORT=smtp|imap|pop3|discard|source "
			        "[--listen ...]   (at most %d)\n",
			        MAX_LISTENERS);
			return 2;
		}
	}
	if (n == 0) {
		fprintf(stderr, "sink: no --listen given\n");
		return 2;
	}
	raise_nofile();
	signal(SIGPIPE, SIG_IGN);
	ev_signal_init(&sigterm, stop_cb, SIGTERM);
	ev_signal_init(&sigint, stop_cb, SIGINT);
	ev_signal_start(loop, &sigterm);
	ev_signal_start(loop, &sigint);
	fprintf(stderr, "sink: ready (%d listeners)\n", n);
	ev_run(loop, 0);
	for (int m = 0; m < M_COUNT; m++)
		if (totals[m].accepted > 0)
			fprintf(stderr, "sink: %s accepted=%llu open=%lu in=%llu out=%llu\n",
			        mode_names[m], totals[m].accepted, totals[m].open,
			        totals[m].bytes_in, totals[m].bytes_out);
	return 0;
}
