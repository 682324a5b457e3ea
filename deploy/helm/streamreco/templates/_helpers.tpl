{{/* Names */}}
{{- define "streamreco.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "streamreco.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* "<fullname>-<component>", e.g. include "streamreco.component" (list . "worker") */}}
{{- define "streamreco.component" -}}
{{- $ctx := index . 0 -}}
{{- printf "%s-%s" (include "streamreco.fullname" $ctx) (index . 1) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels of every object; the selector labels of a component add app.kubernetes.io/component. */}}
{{- define "streamreco.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "streamreco.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: streamreco
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "streamreco.selectorLabels" -}}
{{- $ctx := index . 0 -}}
app.kubernetes.io/name: {{ include "streamreco.name" $ctx }}
app.kubernetes.io/instance: {{ $ctx.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{/* Kafka (Strimzi) */}}
{{- define "streamreco.kafkaCluster" -}}
{{- default (include "streamreco.component" (list . "kafka")) .Values.kafka.clusterName | trunc 52 | trimSuffix "-" -}}
{{- end -}}

{{- define "streamreco.kafkaBootstrap" -}}
{{- printf "%s-kafka-bootstrap:%d" (include "streamreco.kafkaCluster" .) (int .Values.kafka.listenerPort) -}}
{{- end -}}

{{/* Redis */}}
{{- define "streamreco.redisSecret" -}}
{{- default (include "streamreco.component" (list . "redis")) .Values.redis.auth.existingSecret -}}
{{- end -}}

{{- define "streamreco.redisSecretKey" -}}
{{- if .Values.redis.auth.existingSecret -}}{{ .Values.redis.auth.existingSecretKey }}{{- else -}}password{{- end -}}
{{- end -}}

{{/* The worker's pseudonym key */}}
{{- define "streamreco.pseudonymSecret" -}}
{{- default (include "streamreco.component" (list . "worker")) .Values.worker.pseudonymKey.existingSecret -}}
{{- end -}}

{{- define "streamreco.pseudonymSecretKey" -}}
{{- if .Values.worker.pseudonymKey.existingSecret -}}{{ .Values.worker.pseudonymKey.existingSecretKey }}{{- else -}}pseudonym-key{{- end -}}
{{- end -}}

{{/* Images */}}
{{- define "streamreco.workerImage" -}}
{{- printf "%s:%s" .Values.worker.image.repository (default .Chart.AppVersion .Values.worker.image.tag) -}}
{{- end -}}

{{- define "streamreco.modelRepoImage" -}}
{{- $img := .Values.triton.modelRepository.image -}}
{{- printf "%s:%s" $img.repository (default .Chart.AppVersion $img.tag) -}}
{{- end -}}

{{- define "streamreco.tritonImage" -}}
{{- printf "%s:%s-py3" .Values.triton.image.repository (toString .Values.triton.image.tag) -}}
{{- end -}}

{{/* Scrape annotations (the fallback to PodMonitors): include "streamreco.scrapeAnnotations" (list . port) */}}
{{- define "streamreco.scrapeAnnotations" -}}
{{- $ctx := index . 0 -}}
{{- if $ctx.Values.monitoring.annotations }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ index . 1 | quote }}
prometheus.io/path: /metrics
{{- end }}
{{- end -}}

{{/* The events partitions: the worker's RECO_TOPIC_PARTITIONS and the ceiling of its replicas. */}}
{{- define "streamreco.eventsPartitions" -}}
{{- $p := int .Values.kafka.topics.events.partitions -}}
{{- if lt $p 8 -}}
{{- fail (printf "kafka.topics.events.partitions must be at least 8 (got %d)" $p) -}}
{{- end -}}
{{- $p -}}
{{- end -}}
