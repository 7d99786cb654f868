{{/* The endpoint picker image: the caller's (the stackd image) offline, llm-d's upstream. */}}
{{- define "modeldeployment.eppImage" -}}
{{- if eq .Values.gatewayClassName "istio" -}}
{{ .Values.upstream.eppImage }}
{{- else -}}
{{ .Values.epp.image.repository }}{{ with .Values.epp.image.tag }}:{{ . }}{{ end }}
{{- end -}}
{{- end -}}

{{/*
The upstream profile's InferenceSet pod template: KAITO (BYO nodes) runs it as-is on a node the
labelSelector matches, and only requesting nvidia.com/gpu makes the fake GPU capacity decide
where it fits. llm-d-inference-sim serves the OpenAI API and the vllm:* metrics on 5000, where
KAITO's Workspace Service, the InferencePool and keda-kaito-scaler expect the model server.
Offline-safe: a dummy tokenizer (no Hugging Face download), random output, no remote anything.
*/}}
{{- define "modeldeployment.istioSimTemplate" -}}
{{- $sim := .Values.upstream.sim -}}
template:
  metadata:
    labels:
      kaito.sh/owned-by: modeldeployment
  spec:
    containers:
    - name: llm-d-inference-sim
      image: {{ $sim.image }}
      imagePullPolicy: IfNotPresent
      args:
      - --port={{ .Values.epp.modelServerPort }}
      - --model={{ .Values.model }}
      - --served-model-name={{ include "modeldeployment.name" . }}
      - --mode=random
      - --max-num-seqs={{ $sim.maxNumSeqs }}
      - --max-model-len={{ $sim.maxModelLen }}
      - --enable-kvcache=true
      - --kv-cache-size={{ $sim.kvCacheSize }}
      - --block-size=16
      - --force-dummy-tokenizer=true
      - --time-to-first-token={{ $sim.timeToFirstToken }}
      - --inter-token-latency={{ $sim.interTokenLatency }}
      env:
      - name: POD_NAME
        valueFrom:
          fieldRef:
            fieldPath: metadata.name
      - name: POD_NAMESPACE
        valueFrom:
          fieldRef:
            fieldPath: metadata.namespace
      - name: POD_IP
        valueFrom:
          fieldRef:
            fieldPath: status.podIP
      ports:
      - name: http
        containerPort: {{ .Values.epp.modelServerPort }}
        protocol: TCP
      readinessProbe:
        httpGet:
          path: /health
          port: {{ .Values.epp.modelServerPort }}
        periodSeconds: 2
      livenessProbe:
        httpGet:
          path: /health
          port: {{ .Values.epp.modelServerPort }}
        periodSeconds: 10
      resources:
        requests:
          cpu: 50m
          memory: 64Mi
          nvidia.com/gpu: {{ $sim.gpus }}
        limits:
          memory: 512Mi
          nvidia.com/gpu: {{ $sim.gpus }}
{{- end -}}
