/* The one small interface every mail protocol implements. Protocol code is sans-I/O:
 * nothing here touches a socket, a timer or wolfSSL. The core calls only through
 * struct protocol and never asks "is this SMTP?"; cmocka and libFuzzer drive these
 * functions directly.
 *
 * Four jobs per protocol:
 *  1. the pre-TLS dialogue on STARTTLS listeners (greeting, one client line -> reply +
 *     action), answered by mailedge itself;
 *  2. the backend dialogue: swallow the backend's greeting, and for plaintext sessions on
 *     `may` listeners replay what the client already did (SMTP EHLO/HELO);
 *  3. the relay filters, applied to the streams once relaying: refuse STARTTLS (and
 *     XCLIENT/XFORWARD) from the client, remove STARTTLS/STLS from the backend's
 *     capability answers; bulk data (SMTP DATA/BDAT, IMAP literals, POP3 multi-line
 *     bodies) passes through without per-byte work;
 *  4. the capability probe: learn what the backend offers, to filter and offer it
 *     before TLS.
 */
#ifndef MAILEDGE_PROTOCOL_H
#define MAILEDGE_PROTOCOL_H

#include <stddef.h>

/* Bytes to send, bounded. Protocol functions append; the driver writes them out. */
#define PROTO_OUT_MAX 4096
struct proto_out {
	size_t len;
	char data[PROTO_OUT_MAX];
};
/* Append formatted text; silently truncates at PROTO_OUT_MAX (never overflows). */
void proto_out_printf(struct proto_out *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void proto_out_add(struct proto_out *o, const char *s, size_t n);

enum proto_level {
	PROTO_LEVEL_MAY,     /* opportunistic: plaintext clients are relayed in plaintext */
	PROTO_LEVEL_ENCRYPT, /* mandatory: only the RFC-allowed commands before TLS */
};

/* How the backend learns who the client is, in the protocol itself (PROXY v1/v2 are
 * written by the core before any protocol byte and are not the protocol's business). */
enum proto_identity {
	PROTO_IDENT_NONE,
	PROTO_IDENT_XCLIENT, /* SMTP (Postfix XCLIENT_README) and POP3 (Dovecot) */
	PROTO_IDENT_IMAP_ID, /* IMAP ID with Dovecot's x-originating-* fields */
};

/* Who the client is, for the backend dialogue. Addresses are numeric strings. */
struct proto_peer {
	const char *addr; /* client, e.g. "203.0.113.7" or "2001:db8::7" */
	unsigned port;
	const char *local_addr; /* the address the client connected to */
	unsigned local_port;
	int tls; /* the session is under TLS */
};

/* What a protocol may know about its listener. Read-only for the protocol. */
struct proto_config {
	enum proto_level level;
	int implicit_tls;     /* listener is wrapper mode: no pre-TLS dialogue at all */
	const char *hostname; /* for greetings and EHLO */
	const char *greeting; /* free text after the host name; NULL: the protocol's default */
	/* The backend's capabilities (learned by the probe or set statically), one per
	 * line ('\n'-separated): SMTP EHLO keywords with parameters ("SIZE 10240000"),
	 * IMAP capability atoms, POP3 CAPA lines. NULL or "": the protocol's defaults. */
	const char *caps;
	enum proto_identity identity; /* from the listener's backend (client_identity) */
};

/* Result of one client line in the pre-TLS dialogue. The reply in `out` (possibly
 * empty) is always written, completely, before the action takes effect. */
enum proto_action {
	PROTO_CONTINUE, /* read the next line */
	PROTO_STARTTLS, /* discard every byte received after this line, forget all state,
	                   then start the TLS handshake */
	PROTO_BACKEND,  /* `may` listener, client goes on without TLS: connect the backend,
	                   run the backend dialogue, then forward this line and all input after
	                   it in plaintext. `out` is empty. */
	PROTO_CLOSE,    /* close the session */
};

/* Result of one backend line in the backend dialogue. Whatever the protocol put in
 * `to_backend` is written to the backend first, whatever it put in `to_client` goes to
 * the client (through the backend filter, as if the backend had sent it) when relaying
 * starts; then: */
enum proto_bstep {
	PROTO_B_MORE, /* read another backend line */
	PROTO_B_SEND, /* (same as MORE; kept for readability when to_backend is set) */
	PROTO_B_DONE, /* backend is where the client is: start relaying */
	PROTO_B_FAIL, /* backend refused (e.g. 421/554 greeting): client gets tempfail */
};

/* Result of one backend line in the capability probe. */
enum proto_probe {
	PROTO_P_MORE,
	PROTO_P_SEND, /* write `out`, read on */
	PROTO_P_DONE, /* capabilities complete in `caps` ('\n'-separated); QUIT is in `out` */
	PROTO_P_FAIL,
};

/* Relay filter: examines data not yet examined, in place.
 *
 *   buf[0..*len)  bytes received and not yet examined (the filter may rewrite them and
 *                 shrink *len, or insert bytes at a boundary as long as *len <= cap);
 *   cap           how far *len may grow (free room in the relay buffer);
 *   full          1 when the relay buffer is full, so an incomplete line can never
 *                 complete: the filter must then make progress (pass bytes as they are).
 *
 * Returns how many bytes at the start of buf are final (forwarded as they are). The
 * rest stays for the next call, together with any new data. Returning 0 while !full
 * means "need more". The same state (struct proto_state) serves both directions so
 * that a reply can be ordered behind the backend's answers (SMTP pipelining). */
typedef size_t (*proto_filter_fn)(void *state, const struct proto_config *cfg, char *buf,
                                  size_t *len, size_t cap, int full);

struct protocol {
	const char *name;
	/* Longest pre-TLS command line accepted, CRLF included. */
	size_t max_line;
	/* Bytes of per-session state (struct smtp_state, ...); opaque to the core. */
	size_t state_size;

	/* Canned replies, each complete with CRLF. */
	const char *tempfail_reply;  /* no backend reachable; then close */
	const char *too_long_reply;  /* pre-TLS line over max_line; then close */
	const char *timeout_reply;   /* pre-TLS dialogue idle; then close. May hold one %s,
	                                the host name (Postfix: "421 4.4.2 HOST Error: ...") */
	double default_idle_timeout; /* relay idle, seconds (RFC-driven) */

	/* (Re)initialise state. tls: the session is now under TLS (after STARTTLS or on an
	 * implicit listener); plaintext: a `may` session relayed without TLS. */
	void (*init)(void *state, const struct proto_config *cfg, int tls);

	/* 1. pre-TLS dialogue */
	void (*greeting)(void *state, const struct proto_config *cfg, struct proto_out *out);
	/* line: one command line with its line ending, len <= max_line. */
	enum proto_action (*client_line)(void *state, const struct proto_config *cfg,
	                                 const char *line, size_t len, struct proto_out *out);

	/* 2. backend dialogue: one backend line (with line ending) in; bytes for the backend
	 * and for the client out. The core runs it on STARTTLS listeners always, and on
	 * implicit-TLS listeners when cfg->identity != PROTO_IDENT_NONE (then the backend's
	 * greeting must reach the client through to_client, byte-exact, and the backend
	 * filter must not expect another greeting). */
	enum proto_bstep (*backend_line)(void *state, const struct proto_config *cfg,
	                                 const struct proto_peer *peer, const char *line,
	                                 size_t len, struct proto_out *to_backend,
	                                 struct proto_out *to_client);

	/* 3. relay filters */
	proto_filter_fn client_filter;  /* client -> backend */
	proto_filter_fn backend_filter; /* backend -> client */

	/* 4. capability probe, state of probe_state_size bytes, initialised by probe_init. */
	size_t probe_state_size;
	void (*probe_init)(void *pstate, const struct proto_config *cfg);
	enum proto_probe (*probe_line)(void *pstate, const struct proto_config *cfg,
	                               const char *line, size_t len, struct proto_out *out,
	                               char *caps, size_t capslen);
};

extern const struct protocol protocol_smtp;
extern const struct protocol protocol_imap;
extern const struct protocol protocol_pop3;

/* Look a protocol up by its config name; NULL when unknown. */
const struct protocol *protocol_find(const char *name);

/* Shared helpers for protocol files. */
/* Case-insensitive: does the line's first word equal word? *args points after it
 * (and its spaces); *arglen excludes the line ending. */
int proto_word_is(const char *line, size_t len, const char *word, const char **args,
                  size_t *arglen);
/* Length of line without its trailing CRLF or LF. */
size_t proto_strip_eol(const char *line, size_t len);

#endif
