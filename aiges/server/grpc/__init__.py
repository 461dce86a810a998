"""The gRPC fronts, all on the service port: xsf (``utils.XsfCall``), the native stream
(``aiges.v1.Session``), the Open Inference Protocol (``inference.GRPCInferenceService``) and the
original's command endpoint (``utils.ToolBox``)."""
