/*
 * AIGes wrapper ABI: types. Compatible with the original loader's type.h, so an engine built
 * against it loads in aiges unchanged.
 */
#ifndef AIGES_TYPE_H
#define AIGES_TYPE_H

#define WrapperAPI __attribute__((visibility("default")))

typedef enum {
    CTMeterCustom = 0,
    CTMetricsLog = 1,
    CTTraceLog = 2
} CtrlType;

typedef enum {
    DataText = 0,
    DataAudio = 1,
    DataImage = 2,
    DataVideo = 3,
    DataPer = 4
} DataType;

typedef enum {
    DataBegin = 0,
    DataContinue = 1,
    DataEnd = 2,
    DataOnce = 3
} DataStatus;

/* Key/value pairs: the [wrapper] config, call params and data attributes. value holds vlen bytes. */
typedef struct ParamList {
    char* key;
    char* value;
    unsigned int vlen;
    struct ParamList* next;
} *pParamList, *pConfig, *pDescList;

/* One data item of a request or a result. */
typedef struct DataList {
    char* key;
    void* data;
    unsigned int len;
    DataType type;
    DataStatus status;
    pDescList desc;
    struct DataList* next;
} *pDataList;

#endif
