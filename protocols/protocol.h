/* The one small interface every mail protocol implements. Protocol code is sans-I/O:
 * nothing here touches a socket, a timer or wolfSSL; the core calls only through this
 * struct and never asks "is this SMTP?". */
#ifndef MAILEDGE_PROTOCOL_H
#define MAILEDGE_PROTOCOL_H

#include <stddef.h>

struct protocol {
	const char *name;
	/* Sent over TLS, then the session closes, when no backend can be reached. */
	const char *tempfail_reply;
	/* Default relay idle timeout in seconds (RFC-driven, see each protocol file). */
	double default_idle_timeout;
};

extern const struct protocol protocol_smtp;
extern const struct protocol protocol_imap;
extern const struct protocol protocol_pop3;

/* Look a protocol up by its config name; NULL when unknown. */
const struct protocol *protocol_find(const char *name);

#endif
