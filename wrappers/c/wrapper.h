/*
 * AIGes wrapper ABI: the functions an engine exports from libwrapper.so.
 *
 * aiges calls them from one worker process, one call at a time (except callbacks, which the
 * engine may make from its own threads). Input lists and strings are valid only during the
 * call: copy what you keep. Memory an engine returns from wrapperExec is handed back, once and
 * with the same head pointer, to wrapperExecFree; memory returned by wrapperRead stays the
 * engine's (free it at the next read or at wrapperDestroy). Functions the original loader never
 * called (wrapperSetCtrl, wrapperLoadRes, wrapperUnloadRes, wrapperDebugInfo, wrapperVersion)
 * may be left out.
 */
#ifndef AIGES_WRAPPER_H
#define AIGES_WRAPPER_H

#include "type.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Results of an asynchronous call: usrTag as given, the result list (copied before this returns),
   and 0 or an error code. Returns -1 when the tag is unknown. */
typedef int (*wrapperCallback)(const void* usrTag, pDataList respData, int ret);
typedef int (*wrapperMeterCustom)(const void* usrTag, const char* meterKey, int count);
typedef int (*wrapperTraceLog)(const char* usrTag, const char* key, const char* value);

WrapperAPI int wrapperSetCtrl(CtrlType type, void* func);
WrapperAPI int wrapperInit(pConfig cfg);
WrapperAPI int wrapperFini();
WrapperAPI const char* wrapperError(int errNum);
WrapperAPI const char* wrapperVersion();
WrapperAPI int wrapperLoadRes(pDataList perData, unsigned int resId);
WrapperAPI int wrapperUnloadRes(unsigned int resId);

/* Sessions. A NULL handle or a non-zero *errNum means the session was not created. */
WrapperAPI const void* wrapperCreate(const char* usrTag, pParamList params, wrapperCallback cb,
                                     unsigned int psrIds[], int psrCnt, int* errNum);
WrapperAPI int wrapperWrite(const void* handle, pDataList reqData);
WrapperAPI int wrapperRead(const void* handle, pDataList* respData);
WrapperAPI int wrapperDestroy(const void* handle);

/* One-shot calls, synchronous or answered through the callback. */
WrapperAPI int wrapperExec(const char* usrTag, pParamList params, pDataList reqData, pDataList* respData,
                           unsigned int psrIds[], int psrCnt);
WrapperAPI int wrapperExecFree(const char* usrTag, pDataList* respData);
WrapperAPI int wrapperExecAsync(const char* usrTag, pParamList params, pDataList reqData,
                                wrapperCallback callback, int timeout, unsigned int psrIds[], int psrCnt);

WrapperAPI const char* wrapperDebugInfo(const void* handle);

/* aiges' extension, not in the original ABI (optional): the caller of the call or session made
   with this usrTag has gone, or its deadline passed, while the engine runs it. Called from
   another thread than the one running the call; an engine that stops early returns its error
   from the call as usual. The return value is ignored. */
WrapperAPI int wrapperCancel(const char* usrTag);

#ifdef __cplusplus
}
#endif

#endif
