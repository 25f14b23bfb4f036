{{- define "dispatch.name" -}}dispatch{{- end -}}

{{- define "dispatch.fullname" -}}
{{- if contains "dispatch" .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-dispatch" .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "dispatch.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
app.kubernetes.io/part-of: dispatch
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end -}}

{{- define "dispatch.gatewaySelector" -}}
app.kubernetes.io/name: dispatch-gateway
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "dispatch.operatorSelector" -}}
app.kubernetes.io/name: dispatch-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "dispatch.workspacesNamespace" -}}
{{- default .Release.Namespace .Values.workspaces.namespace -}}
{{- end -}}

{{/* image "repository" "tag" root */}}
{{- define "dispatch.image" -}}
{{- $img := index . 0 -}}{{- $root := index . 1 -}}
{{- $tag := default (default $root.Chart.AppVersion $root.Values.image.tag) $img.tag -}}
{{- printf "%s/%s:%s" $root.Values.image.registry $img.repository $tag -}}
{{- end -}}

{{- define "dispatch.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "dispatch.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop: ["ALL"]
{{- end -}}

{{- define "dispatch.authSecretName" -}}
{{- if .Values.gateway.auth.existingUsersSecret -}}
{{- .Values.gateway.auth.existingUsersSecret -}}
{{- else if .Values.gateway.auth.existingSecret -}}
{{- .Values.gateway.auth.existingSecret -}}
{{- else -}}
{{- printf "%s-access" (include "dispatch.fullname" .) -}}
{{- end -}}
{{- end -}}
