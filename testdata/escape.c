/* A hostile RUN step: tries every way out of its root that a Dockerfile author has
 * without privileges beyond the step's own, and prints what it reached.
 *
 *   escape SECRET_FILE WRITE_DIR
 *
 * Each line starting with "LEAK" is a breach; the tests assert there are none.
 * Writes are only attempted into WRITE_DIR (a temporary directory of the test);
 * kernel files are only opened, never written.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

static void try_read(const char *what, const char *path) {
  char buf[4096];
  int fd = open(path, O_RDONLY);
  if (fd < 0) {
    printf("blocked %s %s: %s\n", what, path, strerror(errno));
    return;
  }
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) {
    /* A masked file (Docker binds /dev/null over /proc/kcore) opens and reads
       nothing: that is the mask working. */
    printf("empty %s %s\n", what, path);
    return;
  }
  buf[n] = 0;
  for (ssize_t i = 0; i < n; i++)
    if (buf[i] == 0) buf[i] = ' ';
  printf("LEAK-%s %s: %s\n", what, path, buf);
}

static void scan_environs(void) {
  DIR *d = opendir("/proc");
  if (!d) {
    printf("blocked environ scan: %s\n", strerror(errno));
    return;
  }
  struct dirent *e;
  int self = getpid();
  while ((e = readdir(d))) {
    int pid = atoi(e->d_name);
    if (pid <= 0 || pid == self) continue;
    char path[64], buf[65536];
    snprintf(path, sizeof path, "/proc/%d/environ", pid);
    int fd = open(path, O_RDONLY);
    if (fd < 0) continue;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) continue;
    buf[n] = 0;
    for (ssize_t i = 0; i < n; i++)
      if (buf[i] == 0) buf[i] = '\n';
    if (strstr(buf, "CI_JOB_TOKEN=")) printf("LEAK-ENVIRON pid %d: %s\n", pid, buf);
  }
  closedir(d);
}

static void try_open_write(const char *path) {
  int fd = open(path, O_WRONLY);
  if (fd >= 0) {
    printf("LEAK-WRITABLE %s\n", path);
    close(fd);
  } else {
    printf("blocked write %s: %s\n", path, strerror(errno));
  }
}

static void try_parent(void) {
  pid_t pp = getppid();
  if (pp <= 1) {
    printf("blocked parent: ppid %d\n", pp);
    return;
  }
  char buf[64];
  struct iovec local = {buf, sizeof buf}, remote = {(void *)0x400000, sizeof buf};
  if (process_vm_readv(pp, &local, 1, &remote, 1, 0) >= 0 || errno == EFAULT)
    printf("LEAK-MEMORY process_vm_readv on parent %d allowed\n", pp);
  else
    printf("blocked process_vm_readv %d: %s\n", pp, strerror(errno));
  if (ptrace(PTRACE_ATTACH, pp, 0, 0) == 0) {
    printf("LEAK-PTRACE attached to parent %d\n", pp);
    int status;
    waitpid(pp, &status, __WALL);
    ptrace(PTRACE_DETACH, pp, 0, 0);
  } else {
    printf("blocked ptrace %d: %s\n", pp, strerror(errno));
  }
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: escape SECRET_FILE WRITE_DIR\n");
    return 2;
  }
  setvbuf(stdout, NULL, _IONBF, 0);
  /* Descriptors beyond stdio lead back into kiln. */
  for (int fd = 3; fd < 1024; fd++) {
    char link[64], target[4096];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    if (fcntl(fd, F_GETFD) >= 0) {
      ssize_t n = readlink(link, target, sizeof target - 1);
      target[n > 0 ? n : 0] = 0;
      printf("LEAK-FD %d open (%s)\n", fd, target);
    }
  }
  /* The classic chroot escape: a nested chroot leaves the cwd outside the root. */
  mkdir("kiln-escape", 0755);
  if (chroot("kiln-escape") != 0) {
    printf("blocked chroot: %s\n", strerror(errno));
  } else {
    for (int i = 0; i < 256; i++) chdir("..");
    if (chroot(".") != 0) printf("blocked second chroot: %s\n", strerror(errno));
  }
  rmdir("/kiln-escape");
  try_read("FILE", argv[1]);
  scan_environs();
  char path[4096];
  snprintf(path, sizeof path, "%s/escaped", argv[2]);
  int fd = open(path, O_WRONLY | O_CREAT, 0644);
  if (fd >= 0) {
    printf("LEAK-CREATE %s\n", path);
    close(fd);
  } else {
    printf("blocked create %s: %s\n", path, strerror(errno));
  }
  try_open_write("/proc/sys/kernel/core_pattern");
  try_open_write("/proc/sysrq-trigger");
  try_open_write("/sys/kernel/uevent_helper");
  try_read("KCORE", "/proc/kcore");
  try_parent();
  /* The host's devices: anything in /dev beyond Docker's set. */
  DIR *d = opendir("/dev");
  if (d) {
    struct dirent *e;
    printf("dev:");
    while ((e = readdir(d))) printf(" %s", e->d_name);
    printf("\n");
    closedir(d);
  }
  /* The capability bounding set, as the kernel reports it cap by cap. */
  unsigned long long bnd = 0;
  for (int cap = 0; cap < 64; cap++)
    if (prctl(PR_CAPBSET_READ, cap, 0, 0, 0) == 1) bnd |= 1ULL << cap;
  printf("capbnd: %016llx\n", bnd);
  printf("escape program done\n");
  return 0;
}
