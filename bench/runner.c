/* Run a command and report its resource use: the benchmark's process launcher.
 *
 *   runner OUTFILE COMMAND [ARG...]
 *
 * Forks, execs COMMAND with the inherited stdin/stdout/stderr, reaps it with wait4 and writes
 * one line to OUTFILE: "wall_s user_s sys_s maxrss_kb wait_status".  Exits with the command's
 * status (128+signal if it was killed).
 *
 * Why a separate small program: on Linux a process's peak RSS (ru_maxrss) starts at the peak
 * of the memory image it was forked from, because exec() records the old image's high-water
 * mark.  Forked straight from the benchmark (a Python process holding a corpus of hundreds of
 * MB), every tool would appear to use that much.  Forked from this ~1 MB program, a tool's
 * ru_maxrss is its own.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    struct timespec t0, t1;
    struct rusage ru;
    int status;
    pid_t pid;
    FILE *out;

    if (argc < 3) {
        fprintf(stderr, "usage: runner OUTFILE COMMAND [ARG...]\n");
        return 125;
    }
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pid = fork();
    if (pid < 0) {
        perror("runner: fork");
        return 126;
    }
    if (pid == 0) {
        execvp(argv[2], argv + 2);
        perror("runner: exec");
        _exit(127);
    }
    if (wait4(pid, &status, 0, &ru) < 0) {
        perror("runner: wait4");
        return 126;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    out = fopen(argv[1], "w");
    if (out == NULL) {
        perror("runner: OUTFILE");
        return 126;
    }
    fprintf(out, "%.6f %ld.%06ld %ld.%06ld %ld %d\n",
            (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9,
            (long)ru.ru_utime.tv_sec, (long)ru.ru_utime.tv_usec,
            (long)ru.ru_stime.tv_sec, (long)ru.ru_stime.tv_usec, ru.ru_maxrss, status);
    fclose(out);
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    return 128 + WTERMSIG(status);
}
