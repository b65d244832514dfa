#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

static enum log_level cur_level = LOG_LVL_INFO;
static int to_syslog;

static const char *const level_names[] = {"debug", "info", "warning", "error"};

void
log_setup(enum log_level level, int use_syslog)
{
	cur_level = level;
	if (use_syslog && !to_syslog)
		openlog("mailedge", LOG_PID | LOG_NDELAY, LOG_MAIL);
	else if (!use_syslog && to_syslog)
		closelog();
	to_syslog = use_syslog;
}

enum log_level
log_get_level(void)
{
	return cur_level;
}

int
log_level_parse(const char *s, enum log_level *out)
{
	for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
		if (strcasecmp(s, level_names[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	return -1;
}

void
log_msg(enum log_level level, const char *fmt, ...)
{
	static const int prio[] = {LOG_DEBUG, LOG_INFO, LOG_WARNING, LOG_ERR};
	char msg[1024];
	char stamp[32];
	struct timespec ts;
	struct tm tm;
	va_list ap;

	if (level < cur_level)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
	/* One fprintf per line so concurrent workers do not interleave within a line. */
	fprintf(stderr, "%s.%03ldZ mailedge[%ld]: %s: %s\n", stamp, ts.tv_nsec / 1000000L,
	        (long)getpid(), level_names[level], msg);
	if (to_syslog)
		syslog(prio[level], "%s: %s", level_names[level], msg);
}

char *
log_sanitize(char *dst, size_t dstlen, const void *src, size_t srclen)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *s = src;
	size_t o = 0, i;
	size_t marks[4] = {0}; /* output offsets where the last few characters began */

	if (dstlen == 0)
		return dst;
	for (i = 0; i < srclen; i++) {
		unsigned char c = s[i];
		int plain = c >= 0x20 && c < 0x7f && c != '\\' && c != '"' && c != '\'';
		size_t need = plain ? 1 : 4;
		if (o + need > dstlen - 1)
			break;
		marks[i % 4] = o;
		if (plain) {
			dst[o++] = (char)c;
		} else {
			dst[o++] = '\\';
			dst[o++] = 'x';
			dst[o++] = hex[c >> 4];
			dst[o++] = hex[c & 15];
		}
	}
	if (i < srclen) {
		/* Truncated: end with "..." where it fits, never inside a \xNN escape. Backing
		 * off at most three characters always frees three bytes. */
		for (size_t k = 0; k < 3 && k < i && o + 3 > dstlen - 1; k++)
			o = marks[(i - 1 - k) % 4];
		while (o + 3 > dstlen - 1 && o > 0)
			o--; /* only for tiny dst: nothing of the text fits */
		for (size_t k = 0; k < 3 && o < dstlen - 1; k++)
			dst[o++] = '.';
	}
	dst[o] = '\0';
	return dst;
}
