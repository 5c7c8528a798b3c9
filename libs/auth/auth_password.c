/* argon2id password hashes (libsodium crypto_pwhash), inline and on libuv's thread pool. */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "core.h"

static void params_of(const auth_pwhash_params *p, unsigned long long *ops, size_t *mem)
{
    *ops = p && p->opslimit ? p->opslimit : crypto_pwhash_OPSLIMIT_INTERACTIVE;
    *mem = p && p->memlimit ? p->memlimit : crypto_pwhash_MEMLIMIT_INTERACTIVE;
}

bool auth_password_hash(const char *password, const auth_pwhash_params *p,
                        char out[AUTH_PWHASH_MAX])
{
    if (sodium_init() < 0 || !password) return false;
    unsigned long long ops;
    size_t mem;
    params_of(p, &ops, &mem);
    return crypto_pwhash_str_alg(out, password, strlen(password), ops, mem,
                                 crypto_pwhash_ALG_ARGON2ID13) == 0;
}

bool auth_password_verify(const char *hash, const char *password)
{
    if (sodium_init() < 0 || !hash || !password) return false;
    if (strncmp(hash, "$argon2id$", 10) != 0) return false;
    return crypto_pwhash_str_verify(hash, password, strlen(password)) == 0;
}

bool auth_password_needs_rehash(const char *hash, const auth_pwhash_params *p)
{
    unsigned long long ops;
    size_t mem;
    params_of(p, &ops, &mem);
    return crypto_pwhash_str_needs_rehash(hash, ops, mem) != 0;
}

typedef struct pw_work {
    uv_work_t w;
    char *password;
    char *hash;
    auth_pwhash_params params;
    bool verify;
    bool ok;
    char out[AUTH_PWHASH_MAX];
    auth_pw_cb cb;
    void *data;
} pw_work;

static void pw_run(uv_work_t *w)
{
    pw_work *pw = w->data;
    if (pw->verify)
        pw->ok = auth_password_verify(pw->hash, pw->password);
    else
        pw->ok = auth_password_hash(pw->password, &pw->params, pw->out);
}

static void pw_done(uv_work_t *w, int status)
{
    pw_work *pw = w->data;
    bool ok = status == 0 && pw->ok;
    pw->cb(pw->data, ok, ok && !pw->verify ? pw->out : NULL);
    sodium_memzero(pw->password, strlen(pw->password));
    free(pw->password);
    free(pw->hash);
    sodium_memzero(pw->out, sizeof pw->out);
    free(pw);
}

static void pw_submit(uv_loop_t *loop, pw_work *pw)
{
    pw->w.data = pw;
    if (uv_queue_work(loop, &pw->w, pw_run, pw_done) != 0) {
        /* Cannot happen with a live loop; answer synchronously-failed on the loop anyway. */
        pw->ok = false;
        pw_done(&pw->w, -1);
    }
}

void auth_password_hash_async(uv_loop_t *loop, const char *password, const auth_pwhash_params *p,
                              auth_pw_cb cb, void *data)
{
    pw_work *pw = core_xcalloc(1, sizeof *pw);
    pw->password = core_xstrdup(password);
    if (p) pw->params = *p;
    pw->cb = cb;
    pw->data = data;
    pw_submit(loop, pw);
}

void auth_password_verify_async(uv_loop_t *loop, const char *hash, const char *password,
                                auth_pw_cb cb, void *data)
{
    pw_work *pw = core_xcalloc(1, sizeof *pw);
    pw->password = core_xstrdup(password);
    pw->hash = core_xstrdup(hash);
    pw->verify = true;
    pw->cb = cb;
    pw->data = data;
    pw_submit(loop, pw);
}
