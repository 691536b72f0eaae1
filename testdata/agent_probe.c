/* Asks the ssh agent at $SSH_AUTH_SOCK for its identities (the agent
 * protocol's REQUEST_IDENTITIES) and prints how many it holds. Built static by
 * the tests, so that it runs in any image. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static int read_full(int fd, unsigned char *buf, size_t n) {
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r <= 0)
            return -1;
        got += (size_t)r;
    }
    return 0;
}

int main(void) {
    const char *path = getenv("SSH_AUTH_SOCK");
    if (!path) {
        puts("agent: no SSH_AUTH_SOCK");
        return 1;
    }
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un addr;
    memset(&addr, 0, sizeof addr);
    addr.sun_family = AF_UNIX;
    strncpy(addr.sun_path, path, sizeof addr.sun_path - 1);
    if (s < 0 || connect(s, (struct sockaddr *)&addr, sizeof addr) != 0) {
        perror("agent: connect");
        return 1;
    }
    unsigned char req[5] = {0, 0, 0, 1, 11};
    if (write(s, req, sizeof req) != (ssize_t)sizeof req) {
        perror("agent: write");
        return 1;
    }
    unsigned char head[4];
    if (read_full(s, head, 4) != 0) {
        puts("agent: no answer");
        return 1;
    }
    unsigned len = (unsigned)head[0] << 24 | head[1] << 16 | head[2] << 8 | head[3];
    if (len < 5 || len > 1 << 20) {
        puts("agent: bad answer");
        return 1;
    }
    unsigned char *body = malloc(len);
    if (!body || read_full(s, body, len) != 0 || body[0] != 12) {
        puts("agent: bad answer");
        return 1;
    }
    unsigned n = (unsigned)body[1] << 24 | body[2] << 16 | body[3] << 8 | body[4];
    printf("agent: %u identities at %s\n", n, path);
    return 0;
}
