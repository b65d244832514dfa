#include "protocol.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

void
proto_out_add(struct proto_out *o, const char *s, size_t n)
{
	size_t room = sizeof(o->data) - o->len;

	if (n > room)
		n = room;
	memcpy(o->data + o->len, s, n);
	o->len += n;
}

void
proto_out_printf(struct proto_out *o, const char *fmt, ...)
{
	size_t room = sizeof(o->data) - o->len;
	va_list ap;
	int n;

	if (room == 0)
		return;
	va_start(ap, fmt);
	n = vsnprintf(o->data + o->len, room, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	/* vsnprintf wrote at most room-1 characters plus NUL; the NUL is not data. */
	o->len += (size_t)n < room ? (size_t)n : room - 1;
}

size_t
proto_strip_eol(const char *line, size_t len)
{
	if (len > 0 && line[len - 1] == '\n')
		len--;
	if (len > 0 && line[len - 1] == '\r')
		len--;
	return len;
}

int
proto_word_is(const char *line, size_t len, const char *word, const char **args, size_t *arglen)
{
	size_t n = proto_strip_eol(line, len);
	size_t wl = strlen(word);
	size_t i;

	if (n < wl || strncasecmp(line, word, wl) != 0)
		return 0;
	if (n > wl && line[wl] != ' ')
		return 0;
	for (i = wl; i < n && line[i] == ' '; i++)
		;
	if (args != NULL)
		*args = line + i;
	if (arglen != NULL)
		*arglen = n - i;
	return 1;
}
