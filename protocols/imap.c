#include "protocol.h"

const struct protocol protocol_imap = {
	.name = "imap",
	/* RFC 3501 7.1.5: an untagged BYE as the first reply means the server refuses. */
	.tempfail_reply = "* BYE [UNAVAILABLE] Service temporarily unavailable, try again later\r\n",
	/* RFC 3501 5.4: the autologout timer is at least 30 minutes (IDLE clients rely on it). */
	.default_idle_timeout = 1800.0,
};
