{{- define "modeldeployment.name" -}}
{{- $n := default .Release.Name .Values.name -}}
{{- if gt (len $n) 40 -}}
{{- fail (printf "model name %q is longer than 40 characters: %s-inferencepool-epp must fit in 63" $n $n) -}}
{{- end -}}
{{- $n -}}
{{- end -}}

{{- define "modeldeployment.namespace" -}}
{{- default .Release.Namespace .Values.namespace -}}
{{- end -}}

{{- define "modeldeployment.gatewayName" -}}
{{- default (printf "%s-gw" (include "modeldeployment.namespace" .)) .Values.gatewayName -}}
{{- end -}}

{{- define "modeldeployment.poolName" -}}
{{- include "modeldeployment.name" . }}-inferencepool
{{- end -}}

{{- define "modeldeployment.eppName" -}}
{{- include "modeldeployment.name" . }}-inferencepool-epp
{{- end -}}

{{- define "modeldeployment.labels" -}}
app.kubernetes.io/name: {{ include "modeldeployment.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
kaito.sh/inferenceset: {{ include "modeldeployment.name" . }}
kaito.sh/owned-by: modeldeployment
{{- end -}}

{{- define "modeldeployment.minReplicas" -}}
{{- if hasKey .Values "minReplicas" -}}{{ .Values.minReplicas }}{{- else -}}{{ max 1 .Values.replicas }}{{- end -}}
{{- end -}}
