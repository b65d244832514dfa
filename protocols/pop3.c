#include "protocol.h"

const struct protocol protocol_pop3 = {
	.name = "pop3",
	/* RFC 2449 8.1.2 / RFC 3206: [SYS/TEMP] marks a transient system failure. */
	.tempfail_reply = "-ERR [SYS/TEMP] Service temporarily unavailable, try again later\r\n",
	/* RFC 1939 3: the autologout timer is at least 10 minutes. */
	.default_idle_timeout = 600.0,
};
