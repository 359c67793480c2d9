// kwok Stages for pods (kwok replaces its default pod stages when any are configured: see
// sigs.k8s.io/kwok pkg/kwok/cmd/root.go getDefaultPodStages). pod-ready, pod-complete and pod-delete
// are upstream's kustomize/stage/pod/fast/*.yaml at v0.6.1; the lab adds readiness that follows an
// annotation (a sealed OpenBAO, a failing probe, a stalled rollout) and Job pods that fail:
//   lab.pedro-ops.io/ready: "false"   the pod runs but is NotReady (its readiness probe fails)
//   lab.pedro-ops.io/outcome: fail    a Job pod's container exits 1 (restartCount from
//                                     lab.pedro-ops.io/restarts, message from lab.pedro-ops.io/message)
//   lab.pedro-ops.io/outcome: stall   a Job pod runs forever
//   lab.pedro-ops.io/duration: 300ms  how long a Job pod runs before it ends
const READY = `.metadata.annotations["lab.pedro-ops.io/ready"]`;
const OUTCOME = `.metadata.annotations["lab.pedro-ops.io/outcome"]`;
const READY_COND = `.status.conditions.[] | select( .type == "Ready" ) | .status`;

const containers = (ready: boolean) => `containerStatuses:
      {{ range .spec.containers }}
      - image: {{ .image | Quote }}
        name: {{ .name | Quote }}
        ready: ${ready}
        restartCount: 0
        started: true
        state:
          running:
            startedAt: {{ $now | Quote }}
      {{ end }}`;

const conditions = (ready: boolean) => `conditions:
      - lastTransitionTime: {{ $now | Quote }}
        status: "True"
        type: Initialized
      - lastTransitionTime: {{ $now | Quote }}
        status: "${ready ? 'True' : 'False'}"
        type: Ready
        ${ready ? '' : 'reason: ContainersNotReady'}
      - lastTransitionTime: {{ $now | Quote }}
        status: "${ready ? 'True' : 'False'}"
        type: ContainersReady
      - lastTransitionTime: {{ $now | Quote }}
        status: "True"
        type: PodScheduled`;

// Every lab Stage acts on pods that are not being deleted; pod-delete below is the one that does.
const liveStage = (name: string, rest: string) => `apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: ${name}
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  selector:
    matchExpressions:
    - key: '.metadata.deletionTimestamp'
      operator: 'DoesNotExist'
${rest}`;

const start = (name: string, ready: boolean) =>
  liveStage(
    name,
    `    - key: '.status.podIP'
      operator: 'DoesNotExist'
    - key: '.spec.nodeName'
      operator: 'Exists'
    - key: '${READY}'
      operator: '${ready ? 'NotIn' : 'In'}'
      values: ['false']
  next:
    statusTemplate: |
      {{ $now := Now }}
      ${conditions(ready)}
      ${containers(ready)}
      hostIP: {{ NodeIPWith .spec.nodeName | Quote }}
      podIP: {{ PodIPWith .spec.nodeName ( or .spec.hostNetwork false ) ( or .metadata.uid "" ) ( or .metadata.name "" ) ( or .metadata.namespace "" ) | Quote }}
      phase: Running
      startTime: {{ $now | Quote }}
`,
  );

const flip = (name: string, ready: boolean) =>
  liveStage(
    name,
    `    - key: '.status.phase'
      operator: 'In'
      values: ['Running']
    - key: '.status.podIP'
      operator: 'Exists'
    - key: '${READY}'
      operator: '${ready ? 'NotIn' : 'In'}'
      values: ['false']
    - key: '${READY_COND}'
      operator: 'In'
      values: ['${ready ? 'False' : 'True'}']
  next:
    statusTemplate: |
      {{ $now := Now }}
      ${conditions(ready)}
      ${containers(ready)}
`,
  );

const jobEnd = (name: string, fail: boolean) =>
  liveStage(
    name,
    `    - key: '.status.phase'
      operator: 'In'
      values: ['Running']
    - key: '.metadata.ownerReferences.[].kind'
      operator: 'In'
      values: ['Job']
    - key: '${OUTCOME}'
      operator: '${fail ? 'In' : 'NotIn'}'
      values: ${fail ? "['fail']" : "['fail', 'stall']"}
    - key: '.status.containerStatuses.[].state.terminated'
      operator: 'DoesNotExist'
  delay:
    durationMilliseconds: 300
    durationFrom:
      expressionFrom: '.metadata.annotations["lab.pedro-ops.io/duration"]'
  next:
    statusTemplate: |
      {{ $now := Now }}
      {{ $root := . }}
      containerStatuses:
      {{ range $index, $item := .spec.containers }}
      - image: {{ $item.image | Quote }}
        name: {{ $item.name | Quote }}
        ready: false
        restartCount: ${fail ? `{{ or (index $root.metadata.annotations "lab.pedro-ops.io/restarts") "0" }}` : '0'}
        started: false
        state:
          terminated:
            exitCode: ${fail ? 1 : 0}
            finishedAt: {{ $now | Quote }}
            reason: ${fail ? 'Error' : 'Completed'}
            ${fail ? `message: {{ or (index $root.metadata.annotations "lab.pedro-ops.io/message") "" | Quote }}` : ''}
            startedAt: {{ $now | Quote }}
      {{ end }}
      ${
        fail
          ? // restartPolicy OnFailure: the kubelet restarts the container in place (the Job controller
            // counts restartCount against backoffLimit); Never: the pod fails.
            `phase: {{ if eq .spec.restartPolicy "Never" }}Failed{{ else }}Running{{ end }}`
          : 'phase: Succeeded'
      }
`,
  );

const DELETE = `apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: pod-delete
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  selector:
    matchExpressions:
    - key: '.metadata.deletionTimestamp'
      operator: 'Exists'
  next:
    finalizers:
      empty: true
    delete: true
`;

export const POD_STAGES = [
  start('pod-ready', true),
  start('pod-running-not-ready', false),
  flip('pod-not-ready', false),
  flip('pod-ready-again', true),
  jobEnd('pod-complete', false),
  jobEnd('pod-fail', true),
  DELETE,
].join('---\n');
