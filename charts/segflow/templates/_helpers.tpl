{{/* Names, labels and the few values several templates derive the same way. */}}

{{- define "segflow.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Release-scoped name; the release name alone when it already contains the chart name. */}}
{{- define "segflow.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "segflow.commonLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "segflow.labels" -}}
{{ include "segflow.commonLabels" . }}
{{ include "segflow.selectorLabels" . }}
{{- end -}}

{{- define "segflow.minioLabels" -}}
{{ include "segflow.commonLabels" . }}
{{ include "segflow.minioSelectorLabels" . }}
{{- end -}}

{{- define "segflow.selectorLabels" -}}
app.kubernetes.io/name: {{ include "segflow.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: serving
{{- end -}}

{{- define "segflow.minioSelectorLabels" -}}
app.kubernetes.io/name: {{ include "segflow.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: minio
{{- end -}}

{{- define "segflow.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "segflow.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "segflow.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "segflow.authSecret" -}}
{{- default (printf "%s-auth" (include "segflow.fullname" .)) .Values.auth.existingSecret -}}
{{- end -}}

{{/* The S3 endpoint and credentials the model is fetched with: the chart's MinIO when enabled. */}}
{{- define "segflow.s3Endpoint" -}}
{{- if .Values.minio.enabled -}}
{{- printf "http://%s-minio.%s.svc:9000" (include "segflow.fullname" .) .Release.Namespace -}}
{{- else -}}
{{- .Values.s3.endpoint -}}
{{- end -}}
{{- end -}}

{{- define "segflow.s3Secret" -}}
{{- if .Values.minio.enabled -}}
{{- default (printf "%s-minio" (include "segflow.fullname" .)) .Values.minio.existingSecret -}}
{{- else -}}
{{- .Values.s3.existingSecret -}}
{{- end -}}
{{- end -}}

{{- define "segflow.s3AccessKeyKey" -}}
{{- ternary "accesskey" .Values.s3.accessKeyKey .Values.minio.enabled -}}
{{- end -}}

{{- define "segflow.s3SecretKeyKey" -}}
{{- ternary "secretkey" .Values.s3.secretKeyKey .Values.minio.enabled -}}
{{- end -}}

{{/* The archive version the pods fetch: ARCHIVE_URI/VERSION, or ARCHIVE_URI for the latest. */}}
{{- define "segflow.archiveSource" -}}
{{- $uri := trimSuffix "/" .Values.model.archiveUri -}}
{{- if .Values.model.archiveVersion -}}
{{- printf "%s/%s" $uri .Values.model.archiveVersion -}}
{{- else -}}
{{- $uri -}}
{{- end -}}
{{- end -}}

{{/* The model's prediction URL inside the cluster, through the Service. */}}
{{- define "segflow.predictionsUrl" -}}
{{- printf "http://%s.%s.svc:%v/predictions/%s" (include "segflow.fullname" .) .Release.Namespace .Values.service.port .Values.model.name -}}
{{- end -}}

{{/* A random value kept across upgrades: the existing Secret's, else a new one. */}}
{{- define "segflow.keptRandom" -}}
{{- $existing := lookup "v1" "Secret" .namespace .name -}}
{{- if and $existing (hasKey $existing.data .key) -}}
{{- index $existing.data .key -}}
{{- else -}}
{{- randAlphaNum .length | b64enc -}}
{{- end -}}
{{- end -}}

{{/* The web page's pods (templates/web.yaml): a component of their own, so no serving selector picks them. */}}
{{- define "segflow.webSelectorLabels" -}}
app.kubernetes.io/name: {{ include "segflow.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: web
{{- end -}}

{{- define "segflow.webLabels" -}}
{{ include "segflow.commonLabels" . }}
{{ include "segflow.webSelectorLabels" . }}
{{- end -}}
