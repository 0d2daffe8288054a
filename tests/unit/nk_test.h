/* SPDX-License-Identifier: MIT */
/*
 * nk_test.h - the few lines every unit test program shares: a CHECK that
 * counts failures and says where and why, and a section marker. Each test
 * stays its own program (exit 0 pass, 1 fail); this is only the vocabulary.
 */
#ifndef NK_TEST_H
#define NK_TEST_H

#include <stdio.h>

static int failures;

#define CHECK(cond, ...)                                                        \
	do {                                                                    \
		if (!(cond) && ++failures <= 20) {                              \
			fprintf(stdout, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
			fprintf(stdout, __VA_ARGS__);                           \
			fputc('\n', stdout);                                    \
		}                                                               \
	} while (0)

static inline void section(const char *what)
{
	printf("-- %s\n", what);
	fflush(stdout);
}

/** Print the verdict line and return the exit status. */
static inline int nk_test_done(const char *name)
{
	printf("%s: %s\n", failures ? "FAIL" : "PASS", name);
	return failures ? 1 : 0;
}

#endif /* NK_TEST_H */
