/*
 * An example engine for the AIGes C ABI.
 *
 *   one-shot  every input comes back under its own key, text upper-cased, with the [wrapper]
 *             "prefix" in front; the input "fail" is refused with error 7, "crash" crashes.
 *   async     the same result, computed on a thread of its own and delivered through the callback.
 *   session   each chunk written is counted; every read returns "chunk N: M bytes" for the chunks
 *             written since the last read, and the last chunk (status DataEnd) also brings
 *             "total: T bytes in N chunks". With a callback, results are pushed instead.
 *   resources wrapperLoadRes keeps a resource's first item as a tag (up to 63 bytes, at most
 *             16 resources); a call or a session naming resources (psrIds) has their tags
 *             appended to its text results, " [tag]" each. The resource "refuse" is refused.
 *   cancel    a one-shot call with the param "sleep_ms" takes that long, in steps of 10 ms, and
 *             ends early with error 13 once wrapperCancel (aiges' extension) names its usrTag.
 *
 * Build: gcc -shared -fPIC -O2 -pthread -I.. -o libwrapper.so engine.c
 */
#include <ctype.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "wrapper.h"

enum { ERR_REFUSED = 7, ERR_NO_SESSION = 9, ERR_NO_MEMORY = 12, ERR_INIT = 5, ERR_CANCELLED = 13 };

static char g_prefix[64] = "";

/* Personalised resources: id -> tag. Loaded and unloaded on the worker's thread, read by the
 * async calls' threads too. */
enum { MAX_RESOURCES = 16 };
static struct { unsigned int id; char tag[64]; } g_resources[MAX_RESOURCES];
static int g_resource_count = 0;
static pthread_mutex_t g_resources_lock = PTHREAD_MUTEX_INITIALIZER;

/* The tags of these resources, each as " [tag]", into buffer (of size n). */
static void resource_tags(const unsigned int ids[], int count, char* buffer, size_t n) {
    buffer[0] = '\0';
    pthread_mutex_lock(&g_resources_lock);
    for (int i = 0; i < count; i++) {
        for (int r = 0; r < g_resource_count; r++) {
            if (g_resources[r].id == ids[i]) {
                size_t used = strlen(buffer);
                snprintf(buffer + used, n - used, " [%s]", g_resources[r].tag);
            }
        }
    }
    pthread_mutex_unlock(&g_resources_lock);
}

/* The usrTags wrapperCancel named lately (a small ring: a tag is cancelled while its call runs). */
#define CANCELLED_KEPT 16
static pthread_mutex_t g_cancel_lock = PTHREAD_MUTEX_INITIALIZER;
static char g_cancelled[CANCELLED_KEPT][128];
static unsigned int g_cancelled_next = 0;

int wrapperCancel(const char* usrTag) {
    pthread_mutex_lock(&g_cancel_lock);
    snprintf(g_cancelled[g_cancelled_next++ % CANCELLED_KEPT], sizeof(g_cancelled[0]), "%s", usrTag);
    pthread_mutex_unlock(&g_cancel_lock);
    return 0;
}

static int is_cancelled(const char* usrTag) {
    int found = 0;
    pthread_mutex_lock(&g_cancel_lock);
    for (int i = 0; i < CANCELLED_KEPT && !found; i++) {
        found = usrTag != NULL && strcmp(g_cancelled[i], usrTag) == 0;
    }
    pthread_mutex_unlock(&g_cancel_lock);
    return found;
}

static const char* param(pParamList list, const char* key) {
    for (; list != NULL; list = list->next) {
        if (list->key != NULL && strcmp(list->key, key) == 0) {
            return list->value;
        }
    }
    return NULL;
}

static char* copy_string(const char* text) {
    size_t n = strlen(text) + 1;
    char* copy = malloc(n);
    if (copy != NULL) {
        memcpy(copy, text, n);
    }
    return copy;
}

static pDataList new_item(const char* key, const void* data, unsigned int len, DataType type, DataStatus status) {
    pDataList item = calloc(1, sizeof(*item));
    if (item == NULL) {
        return NULL;
    }
    item->key = copy_string(key);
    item->data = malloc(len > 0 ? len : 1);
    if (item->key == NULL || item->data == NULL) {
        free(item->key);
        free(item->data);
        free(item);
        return NULL;
    }
    if (len > 0) {
        memcpy(item->data, data, len);
    }
    item->len = len;
    item->type = type;
    item->status = status;
    return item;
}

static void free_list(pDataList list) {
    while (list != NULL) {
        pDataList next = list->next;
        free(list->key);
        free(list->data);
        free(list);
        list = next;
    }
}

static int is(const pDataList item, const char* word) {
    size_t n = strlen(word);
    return item->len == n && memcmp(item->data, word, n) == 0;
}

/* The one-shot computation: prefix + upper-cased text (+ the resources' tags), binary data as it is. */
static int compute(pDataList request, pDataList* result, const char* tags) {
    pDataList head = NULL, *tail = &head;
    for (pDataList item = request; item != NULL; item = item->next) {
        if (is(item, "crash")) {
            raise(SIGSEGV);
        }
        if (is(item, "fail")) {
            free_list(head);
            return ERR_REFUSED;
        }
        size_t prefix = item->type == DataText ? strlen(g_prefix) : 0;
        size_t suffix = item->type == DataText ? strlen(tags) : 0;
        unsigned int len = item->len + (unsigned int)(prefix + suffix);
        char* buffer = malloc(len > 0 ? len : 1);
        if (buffer == NULL) {
            free_list(head);
            return ERR_NO_MEMORY;
        }
        memcpy(buffer, g_prefix, prefix);
        memcpy(buffer + prefix, item->data, item->len);
        if (item->type == DataText) {
            for (unsigned int i = (unsigned int)prefix; i < prefix + item->len; i++) {
                buffer[i] = (char)toupper((unsigned char)buffer[i]);
            }
            memcpy(buffer + prefix + item->len, tags, suffix);
        }
        *tail = new_item(item->key, buffer, len, item->type, DataOnce);
        free(buffer);
        if (*tail == NULL) {
            free_list(head);
            return ERR_NO_MEMORY;
        }
        tail = &(*tail)->next;
    }
    *result = head;
    return 0;
}

int wrapperInit(pConfig cfg) {
    const char* prefix = param(cfg, "prefix");
    if (param(cfg, "fail_init") != NULL) {
        return ERR_INIT;
    }
    snprintf(g_prefix, sizeof(g_prefix), "%s", prefix != NULL ? prefix : "");
    return 0;
}

int wrapperFini() { return 0; }

const char* wrapperError(int errNum) {
    switch (errNum) {
        case ERR_REFUSED: return "the engine refused this input";
        case ERR_NO_SESSION: return "no such session";
        case ERR_NO_MEMORY: return "out of memory";
        case ERR_INIT: return "the engine could not start";
        case ERR_CANCELLED: return "the call was cancelled: its caller went away";
        default: return "unknown engine error";
    }
}

const char* wrapperVersion() { return "example-1.0"; }

int wrapperLoadRes(pDataList perData, unsigned int resId) {
    if (perData == NULL) {
        return ERR_REFUSED;
    }
    if (is(perData, "refuse")) {
        return ERR_REFUSED;
    }
    pthread_mutex_lock(&g_resources_lock);
    int slot = 0;
    while (slot < g_resource_count && g_resources[slot].id != resId) {
        slot++;
    }
    if (slot == MAX_RESOURCES) {
        pthread_mutex_unlock(&g_resources_lock);
        return ERR_NO_MEMORY;
    }
    if (slot == g_resource_count) {
        g_resource_count++;
    }
    g_resources[slot].id = resId;
    unsigned int n = perData->len < sizeof(g_resources[slot].tag) ? perData->len : sizeof(g_resources[slot].tag) - 1;
    memcpy(g_resources[slot].tag, perData->data, n); /* the list is the loader's: copy */
    g_resources[slot].tag[n] = '\0';
    pthread_mutex_unlock(&g_resources_lock);
    return 0;
}

int wrapperUnloadRes(unsigned int resId) {
    pthread_mutex_lock(&g_resources_lock);
    for (int r = 0; r < g_resource_count; r++) {
        if (g_resources[r].id == resId) {
            g_resources[r] = g_resources[--g_resource_count];
            break;
        }
    }
    pthread_mutex_unlock(&g_resources_lock);
    return 0;
}

int wrapperExec(const char* usrTag, pParamList params, pDataList reqData, pDataList* respData,
                unsigned int psrIds[], int psrCnt) {
    const char* sleep_ms = param(params, "sleep_ms");
    for (int waited = 0; sleep_ms != NULL && waited < atoi(sleep_ms); waited += 10) {
        if (is_cancelled(usrTag)) {
            return ERR_CANCELLED;
        }
        usleep(10000);
    }
    char tags[512];
    resource_tags(psrIds, psrCnt, tags, sizeof(tags));
    return compute(reqData, respData, tags);
}

int wrapperExecFree(const char* usrTag, pDataList* respData) {
    (void)usrTag;
    free_list(*respData);
    *respData = NULL;
    return 0;
}

struct async_call {
    const char* usrTag;
    pDataList request;
    wrapperCallback callback;
    char tags[512];
};

static pDataList copy_list(pDataList list) {
    pDataList head = NULL, *tail = &head;
    for (; list != NULL; list = list->next) {
        *tail = new_item(list->key, list->data, list->len, list->type, list->status);
        if (*tail == NULL) {
            free_list(head);
            return NULL;
        }
        tail = &(*tail)->next;
    }
    return head;
}

static void* run_async(void* arg) {
    struct async_call* call = arg;
    pDataList result = NULL;
    int ret = compute(call->request, &result, call->tags);
    call->callback(call->usrTag, result, ret);
    free_list(result);
    free_list(call->request);
    free(call);
    return NULL;
}

int wrapperExecAsync(const char* usrTag, pParamList params, pDataList reqData, wrapperCallback callback,
                     int timeout, unsigned int psrIds[], int psrCnt) {
    (void)params; (void)timeout;
    struct async_call* call = malloc(sizeof(*call));
    if (call == NULL) {
        return ERR_NO_MEMORY;
    }
    resource_tags(psrIds, psrCnt, call->tags, sizeof(call->tags)); /* psrIds live only for this call */
    call->usrTag = usrTag;           /* the loader keeps usrTag alive until the callback */
    call->request = copy_list(reqData); /* the request is valid only during this call */
    call->callback = callback;
    pthread_t thread;
    if (pthread_create(&thread, NULL, run_async, call) != 0) {
        free_list(call->request);
        free(call);
        return ERR_NO_MEMORY;
    }
    pthread_detach(thread);
    return 0;
}

struct session {
    char* usrTag;
    char tags[512];
    wrapperCallback callback;
    unsigned long chunks;
    unsigned long bytes;
    pDataList pending;   /* results not read yet */
    pDataList returned;  /* what the last read returned: ours until the next read or destroy */
};

const void* wrapperCreate(const char* usrTag, pParamList params, wrapperCallback cb, unsigned int psrIds[],
                          int psrCnt, int* errNum) {
    (void)params;
    struct session* s = calloc(1, sizeof(*s));
    if (s == NULL || (s->usrTag = copy_string(usrTag)) == NULL) {
        free(s);
        *errNum = ERR_NO_MEMORY;
        return NULL;
    }
    resource_tags(psrIds, psrCnt, s->tags, sizeof(s->tags));
    s->callback = cb;
    *errNum = 0;
    return s;
}

static void append(pDataList* list, pDataList item) {
    while (*list != NULL) {
        list = &(*list)->next;
    }
    *list = item;
}

int wrapperWrite(const void* handle, pDataList reqData) {
    struct session* s = (struct session*)handle;
    if (s == NULL) {
        return ERR_NO_SESSION;
    }
    for (pDataList item = reqData; item != NULL; item = item->next) {
        if (is(item, "crash")) {
            raise(SIGSEGV);
        }
        s->chunks++;
        s->bytes += item->len;
        char text[96];
        int n = snprintf(text, sizeof(text), "chunk %lu: %u bytes", s->chunks, item->len);
        append(&s->pending, new_item("count", text, (unsigned int)n, DataText, DataContinue));
        if (item->status == DataEnd) {
            char total[640];
            n = snprintf(total, sizeof(total), "total: %lu bytes in %lu chunks%s", s->bytes, s->chunks, s->tags);
            append(&s->pending, new_item("count", total, (unsigned int)n, DataText, DataEnd));
        }
    }
    if (s->callback != NULL && s->pending != NULL) {
        s->callback(s->usrTag, s->pending, 0);
        free_list(s->pending);
        s->pending = NULL;
    }
    return 0;
}

int wrapperRead(const void* handle, pDataList* respData) {
    struct session* s = (struct session*)handle;
    if (s == NULL) {
        return ERR_NO_SESSION;
    }
    free_list(s->returned);
    s->returned = s->pending;
    s->pending = NULL;
    *respData = s->returned;
    return 0;
}

int wrapperDestroy(const void* handle) {
    struct session* s = (struct session*)handle;
    if (s == NULL) {
        return ERR_NO_SESSION;
    }
    free_list(s->pending);
    free_list(s->returned);
    free(s->usrTag);
    free(s);
    return 0;
}
