{{- define "modelharness.namespace" -}}
{{- default .Release.Namespace .Values.namespace -}}
{{- end -}}

{{- define "modelharness.gatewayName" -}}
{{- default (printf "%s-gw" (include "modelharness.namespace" .)) .Values.gatewayName -}}
{{- end -}}

{{- define "modelharness.labels" -}}
app.kubernetes.io/name: modelharness
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
kaito.sh/owned-by: modelharness
{{- end -}}
