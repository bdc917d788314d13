{{/* Names, labels and images shared by the templates. */}}

{{- define "agent-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's full name: names every object of the release (and the peering). */}}
{{- define "agent-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "agent-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of the release, without app.kubernetes.io/name (the spend record policy keeps its own). */}}
{{- define "agent-operator.releaseLabels" -}}
helm.sh/chart: {{ include "agent-operator.chart" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "agent-operator.labels" -}}
app.kubernetes.io/name: {{ include "agent-operator.name" . }}
{{ include "agent-operator.releaseLabels" . }}
{{- end }}

{{/* The operator's pods (the Deployment's selector, the PDB's, the spread's, the
metrics Service's) and the metrics Service (the ServiceMonitor's selector). */}}
{{- define "agent-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "agent-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "agent-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "agent-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Who the (Cluster)RoleBindings bind: the operator's ServiceAccount. */}}
{{- define "agent-operator.subjects" -}}
- kind: ServiceAccount
  name: {{ include "agent-operator.serviceAccountName" . }}
  namespace: {{ .Release.Namespace }}
{{- end }}

{{- define "agent-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The gateway sidecar's image: gatewayImage, each empty field from image. */}}
{{- define "agent-operator.gatewayImage" -}}
{{- $repository := default .Values.image.repository .Values.gatewayImage.repository }}
{{- $tag := default (default .Chart.AppVersion .Values.image.tag) .Values.gatewayImage.tag }}
{{- printf "%s:%s" $repository $tag }}
{{- end }}

{{/* Several replicas take turns through kopf peering; one runs standalone. */}}
{{- define "agent-operator.peering" -}}
{{- if gt (int .Values.replicaCount) 1 }}{{ include "agent-operator.fullname" . }}{{ end }}
{{- end }}

{{/*
The operator's permissions inside the namespaces it watches (docs/operator.md,
"Permissions"): each verb is one the code uses. Children are written with
server-side apply, which needs create as well as patch when the object is new.
*/}}
{{- define "agent-operator.namespacedRules" -}}
- apiGroups: [agents.dev]
  resources: [agentdeployments]
  verbs: [get, list, watch, patch]
- apiGroups: [agents.dev]
  resources: [agentdeployments/status]
  verbs: [patch]
# children's ownerReferences set blockOwnerDeletion (OwnerReferencesPermissionEnforcement)
- apiGroups: [agents.dev]
  resources: [agentdeployments/finalizers]
  verbs: [update]
- apiGroups: [agents.dev]
  resources: [spendrecords]
  verbs: [get, list, watch, create, update, delete]
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch, create, patch]
- apiGroups: [""]
  resources: [services, configmaps, serviceaccounts]
  verbs: [get, list, watch, create, patch]
- apiGroups: [rbac.authorization.k8s.io]
  resources: [roles, rolebindings]
  verbs: [get, list, watch, create, patch]
# deleted when the spec no longer asks for them (autoscaling, client keys)
- apiGroups: [autoscaling]
  resources: [horizontalpodautoscalers]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, list, watch, create, patch, delete]
# which pods' spend records are left to settle
- apiGroups: [""]
  resources: [pods]
  verbs: [list]
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- if include "agent-operator.peering" . }}
{{- if .Values.watchNamespaces }}
- apiGroups: [kopf.dev]
  resources: [kopfpeerings]
  verbs: [get, list, watch, patch]
{{- end }}
{{- end }}
{{- end }}

{{/* What kopf reads cluster-wide in either mode. */}}
{{- define "agent-operator.clusterRules" -}}
# kopf's discovery: CRDs created or removed while it runs
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [list, watch]
{{- if .Values.watchNamespaces }}
# kopf follows the watched namespaces being created and deleted
- apiGroups: [""]
  resources: [namespaces]
  verbs: [list, watch]
{{- else if include "agent-operator.peering" . }}
- apiGroups: [kopf.dev]
  resources: [clusterkopfpeerings]
  verbs: [get, list, watch, patch]
{{- end }}
{{- end }}
