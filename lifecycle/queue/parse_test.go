package queue

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/swarm-agent/swarm-agent/lifecycle"
)

const (
	hookTerminating = `{"Origin":"AutoScalingGroup","LifecycleHookName":"drain","Destination":"EC2","AccountId":"123456789012","RequestId":"4f1b0a4c-2e8e-4c4a-9d35-2b7d0f0f7a11","LifecycleTransition":"autoscaling:EC2_INSTANCE_TERMINATING","AutoScalingGroupName":"swarm-workers","Service":"AWS Auto Scaling","Time":"2026-03-01T10:00:00.000Z","EC2InstanceId":"i-0123456789abcdef0","LifecycleActionToken":"71514b9d-6a40-4b26-8523-05e7eEXAMPLE","NotificationMetadata":"cluster=prod"}`
	hookLaunching   = `{"Origin":"EC2","LifecycleHookName":"ready","Destination":"AutoScalingGroup","AccountId":"123456789012","LifecycleTransition":"autoscaling:EC2_INSTANCE_LAUNCHING","AutoScalingGroupName":"swarm-workers","Service":"AWS Auto Scaling","Time":"2026-03-01T10:00:00.000Z","EC2InstanceId":"i-0123456789abcdef0","LifecycleActionToken":"71514b9d-6a40-4b26-8523-05e7eEXAMPLE"}`
	testNotice      = `{"AccountId":"123456789012","RequestId":"4f1b0a4c","AutoScalingGroupARN":"arn:aws:autoscaling:eu-west-1:123456789012:autoScalingGroup:x","AutoScalingGroupName":"swarm-workers","Service":"AWS Auto Scaling","Event":"autoscaling:TEST_NOTIFICATION","Time":"2026-03-01T10:00:00.000Z"}`
	eventTerminate  = `{"version":"0","id":"3e3c153a-8339-4e30-8c35-687ebef853fe","detail-type":"EC2 Instance-terminate Lifecycle Action","source":"aws.autoscaling","account":"123456789012","time":"2026-03-01T10:00:00Z","region":"eu-west-1","resources":["arn:aws:autoscaling:eu-west-1:123456789012:autoScalingGroup:x"],"detail":{"LifecycleActionToken":"87654321-4321-4321-4321-210987654321","AutoScalingGroupName":"swarm-managers","LifecycleHookName":"drain-managers","EC2InstanceId":"i-1234567890abcdef0","LifecycleTransition":"autoscaling:EC2_INSTANCE_TERMINATING","NotificationMetadata":"","Origin":"AutoScalingGroup","Destination":"EC2"}}`
	eventLaunch     = `{"version":"0","id":"1","detail-type":"EC2 Instance-launch Lifecycle Action","source":"aws.autoscaling","detail":{"LifecycleTransition":"autoscaling:EC2_INSTANCE_LAUNCHING","EC2InstanceId":"i-1234567890abcdef0","AutoScalingGroupName":"a","LifecycleHookName":"h"}}`
	eventWarmLaunch = `{"version":"0","id":"12345678-1234-1234-1234-123456789012","detail-type":"EC2 Instance-launch Lifecycle Action","source":"aws.autoscaling","account":"123456789012","time":"2021-01-13T00:12:37.214Z","region":"us-west-2","resources":["arn:aws:autoscaling:us-west-2:123456789012:autoScalingGroup:042cba90-ad2f-431c-9b4d-6d9055bcc9fb:autoScalingGroupName/my-asg"],"detail":{"LifecycleActionToken":"71514b9d-6a40-4b26-8523-05e7eEXAMPLE","AutoScalingGroupName":"my-asg","LifecycleHookName":"my-launch-lifecycle-hook","EC2InstanceId":"i-1234567890abcdef0","LifecycleTransition":"autoscaling:EC2_INSTANCE_LAUNCHING","NotificationMetadata":"additional-info","Origin":"EC2","Destination":"WarmPool"}}`
	eventWarmReturn = `{"version":"0","id":"4","detail-type":"EC2 Instance-terminate Lifecycle Action","source":"aws.autoscaling","time":"2022-03-28T00:12:37.214Z","detail":{"LifecycleActionToken":"42694b3d-4b70-6a62-8523-09a1eEXAMPLE","AutoScalingGroupName":"my-asg","LifecycleHookName":"my-termination-lifecycle-hook","EC2InstanceId":"i-1234567890abcdef0","LifecycleTransition":"autoscaling:EC2_INSTANCE_TERMINATING","NotificationMetadata":"additional-info","Origin":"AutoScalingGroup","Destination":"WarmPool"}}`
	eventSpot       = `{"version":"0","id":"2","detail-type":"EC2 Spot Instance Interruption Warning","source":"aws.ec2","time":"2026-03-01T10:00:00Z","detail":{"instance-id":"i-0aaaaaaaabbbbbbbb","instance-action":"terminate"}}`
	eventOther      = `{"version":"0","id":"3","detail-type":"EC2 Instance Terminate Successful","source":"aws.autoscaling","detail":{"EC2InstanceId":"i-1234567890abcdef0"}}`
)

// sns wraps body the way SNS delivers it to an SQS subscription without raw delivery.
func sns(body string) string {
	msg, _ := json.Marshal(body)
	return `{"Type":"Notification","MessageId":"22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324","TopicArn":"arn:aws:sns:eu-west-1:123456789012:notices","Subject":"Auto Scaling: Lifecycle action 'TERMINATING'","Message":` +
		string(msg) + `,"Timestamp":"2026-03-01T10:00:00.000Z","SignatureVersion":"1","Signature":"x","SigningCertURL":"https://sns","UnsubscribeURL":"https://sns"}`
}

func TestParse(t *testing.T) {
	hookNotice := lifecycle.Notice{Kind: "scale-in", InstanceID: "i-0123456789abcdef0", ASG: "swarm-workers",
		Hook: "drain", Token: "71514b9d-6a40-4b26-8523-05e7eEXAMPLE", Source: "queue", Destination: "EC2"}
	eventNotice := lifecycle.Notice{Kind: "scale-in", InstanceID: "i-1234567890abcdef0", ASG: "swarm-managers",
		Hook: "drain-managers", Token: "87654321-4321-4321-4321-210987654321", Source: "queue", Destination: "EC2"}
	launchNotice := lifecycle.Notice{Kind: "launch", InstanceID: "i-0123456789abcdef0", ASG: "swarm-workers",
		Hook: "ready", Token: "71514b9d-6a40-4b26-8523-05e7eEXAMPLE", Source: "queue", Destination: "AutoScalingGroup"}
	warmLaunch := lifecycle.Notice{Kind: "launch", InstanceID: "i-1234567890abcdef0", ASG: "my-asg",
		Hook: "my-launch-lifecycle-hook", Token: "71514b9d-6a40-4b26-8523-05e7eEXAMPLE", Source: "queue", Destination: "WarmPool"}
	warmReturn := lifecycle.Notice{Kind: "scale-in", InstanceID: "i-1234567890abcdef0", ASG: "my-asg",
		Hook: "my-termination-lifecycle-hook", Token: "42694b3d-4b70-6a62-8523-09a1eEXAMPLE", Source: "queue", Destination: "WarmPool"}
	spotNotice := lifecycle.Notice{Kind: "spot", InstanceID: "i-0aaaaaaaabbbbbbbb", Source: "queue",
		Deadline: time.Date(2026, 3, 1, 10, 2, 0, 0, time.UTC)}

	tests := []struct {
		name    string
		body    string
		want    lifecycle.Notice
		kind    Kind
		wantErr string // substring; "" means no error
	}{
		{name: "hook terminating", body: hookTerminating, want: hookNotice, kind: KindTerminate},
		{name: "hook terminating via SNS", body: sns(hookTerminating), want: hookNotice, kind: KindTerminate},
		{name: "hook launching", body: hookLaunching, want: launchNotice, kind: KindLaunch},
		{name: "hook launching via SNS", body: sns(hookLaunching), want: launchNotice, kind: KindLaunch},
		{name: "test notification", body: testNotice, kind: KindTest},
		{name: "test notification via SNS", body: sns(testNotice), kind: KindTest},
		{name: "plain autoscaling notification", body: `{"Event":"autoscaling:EC2_INSTANCE_TERMINATE","EC2InstanceId":"i-0123456789abcdef0"}`, kind: KindIgnore},
		{name: "eventbridge terminate", body: eventTerminate, want: eventNotice, kind: KindTerminate},
		{name: "eventbridge terminate via SNS", body: sns(eventTerminate), want: eventNotice, kind: KindTerminate},
		{name: "eventbridge launch", body: eventLaunch, kind: KindLaunch,
			want: lifecycle.Notice{Kind: "launch", InstanceID: "i-1234567890abcdef0", ASG: "a", Hook: "h", Source: "queue"}},
		{name: "eventbridge launch into the warm pool", body: eventWarmLaunch, want: warmLaunch, kind: KindLaunch},
		{name: "eventbridge return to the warm pool", body: eventWarmReturn, want: warmReturn, kind: KindTerminate},
		{name: "eventbridge launch without transition", body: `{"detail-type":"EC2 Instance-launch Lifecycle Action","detail":{"EC2InstanceId":"i-1234567890abcdef0","AutoScalingGroupName":"a","LifecycleHookName":"h"}}`,
			want: lifecycle.Notice{Kind: "launch", InstanceID: "i-1234567890abcdef0", ASG: "a", Hook: "h", Source: "queue"}, kind: KindLaunch},
		{name: "eventbridge spot warning", body: eventSpot, want: spotNotice, kind: KindTerminate},
		{name: "eventbridge other", body: eventOther, kind: KindIgnore},
		{name: "short instance id", body: `{"LifecycleTransition":"autoscaling:EC2_INSTANCE_TERMINATING","AutoScalingGroupName":"a","LifecycleHookName":"h","EC2InstanceId":"i-12345678"}`,
			want: lifecycle.Notice{Kind: "scale-in", InstanceID: "i-12345678", ASG: "a", Hook: "h", Source: "queue"}, kind: KindTerminate},

		{name: "empty", body: ``, wantErr: "not a JSON object"},
		{name: "array", body: `[1]`, wantErr: "not a JSON object"},
		{name: "truncated", body: hookTerminating[:40], wantErr: "decode message body"},
		{name: "no transition", body: `{"EC2InstanceId":"i-0123456789abcdef0"}`, wantErr: "no LifecycleTransition"},
		{name: "unknown transition", body: strings.Replace(hookTerminating, "EC2_INSTANCE_TERMINATING", "EC2_INSTANCE_REBOOTING", 1), wantErr: `LifecycleTransition "autoscaling:EC2_INSTANCE_REBOOTING"`},
		{name: "bad instance id", body: strings.Replace(hookTerminating, "i-0123456789abcdef0", "i-XYZ", 1), wantErr: `EC2InstanceId "i-XYZ" is not an instance id`},
		{name: "instance id too long", body: strings.Replace(hookTerminating, "i-0123456789abcdef0", "i-0123456789abcdef0123", 1), wantErr: "EC2InstanceId"},
		{name: "upper-case instance id", body: strings.Replace(hookTerminating, "i-0123456789abcdef0", "i-0123456789ABCDEF0", 1), wantErr: "EC2InstanceId"},
		{name: "missing group", body: strings.Replace(hookTerminating, `"AutoScalingGroupName":"swarm-workers"`, `"AutoScalingGroupName":""`, 1), wantErr: "AutoScalingGroupName is empty"},
		{name: "missing hook", body: strings.Replace(hookTerminating, `"LifecycleHookName":"drain"`, `"X":""`, 1), wantErr: "LifecycleHookName is empty"},
		{name: "wrong field type", body: strings.Replace(hookTerminating, `"EC2InstanceId":"i-0123456789abcdef0"`, `"EC2InstanceId":7`, 1), wantErr: "EC2InstanceId"},
		{name: "eventbridge terminate without detail", body: `{"detail-type":"EC2 Instance-terminate Lifecycle Action","source":"aws.autoscaling"}`, wantErr: "has no detail"},
		{name: "eventbridge terminate with launching transition", body: strings.Replace(eventTerminate, "EC2_INSTANCE_TERMINATING", "EC2_INSTANCE_LAUNCHING", 1), wantErr: "carries LifecycleTransition"},
		{name: "eventbridge launch with terminating transition", body: strings.Replace(eventLaunch, "EC2_INSTANCE_LAUNCHING", "EC2_INSTANCE_TERMINATING", 1), wantErr: "carries LifecycleTransition"},
		{name: "eventbridge launch without detail", body: `{"detail-type":"EC2 Instance-launch Lifecycle Action"}`, wantErr: "has no detail"},
		{name: "unknown destination", body: strings.Replace(eventWarmLaunch, `"Destination":"WarmPool"`, `"Destination":"Moon"`, 1), wantErr: `Destination "Moon"`},
		{name: "unknown origin", body: strings.Replace(hookLaunching, `"Origin":"EC2"`, `"Origin":"ec2"`, 1), wantErr: `Origin "ec2"`},
		{name: "launch bad instance", body: strings.Replace(hookLaunching, "i-0123456789abcdef0", "i-0", 1), wantErr: "EC2InstanceId"},
		{name: "eventbridge bad instance", body: strings.Replace(eventTerminate, "i-1234567890abcdef0", "x", 1), wantErr: "event detail: EC2InstanceId"},
		{name: "eventbridge empty detail-type", body: `{"detail-type":"","detail":{}}`, wantErr: "empty detail-type"},
		{name: "spot bad instance", body: strings.Replace(eventSpot, "i-0aaaaaaaabbbbbbbb", "i-", 1), wantErr: "instance-id"},
		{name: "SNS of malformed", body: sns(`{"LifecycleTransition":"autoscaling:EC2_INSTANCE_TERMINATING"}`), wantErr: "SNS Message: EC2InstanceId"},
		{name: "SNS inside SNS", body: sns(sns(hookTerminating)), wantErr: "nested"},
		{name: "SNS message not JSON", body: sns("hello"), wantErr: "SNS Message: message body is not a JSON object"},
		{name: "oversized", body: `{"x":"` + strings.Repeat("a", maxBody) + `"}`, wantErr: "exceeds"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, kind, err := Parse([]byte(tt.body))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Parse() error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse() error = %v", err)
			}
			if kind != tt.kind {
				t.Errorf("kind = %q, want %q", kind, tt.kind)
			}
			if got != tt.want {
				t.Errorf("notice = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestParseErrorDoesNotEchoToken(t *testing.T) {
	token := "71514b9d-6a40-4b26-8523-05e7eEXAMPLE-and-much-longer-than-a-uuid"
	body := strings.Replace(hookTerminating, "71514b9d-6a40-4b26-8523-05e7eEXAMPLE", token, 1)
	_, _, err := Parse([]byte(body))
	if err == nil {
		t.Fatal("Parse() accepted an over-long token")
	}
	if strings.Contains(err.Error(), "EXAMPLE") {
		t.Errorf("error %q quotes the lifecycle action token", err)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{hookTerminating, hookLaunching, testNotice, eventTerminate, eventLaunch, eventSpot, eventWarmLaunch, eventWarmReturn, sns(hookLaunching),
		eventOther, sns(hookTerminating), sns(eventTerminate), sns(testNotice), sns(sns(hookTerminating)), `{}`, `[]`, `null`, ``} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		n, kind, err := Parse(body)
		if err != nil {
			if kind != "" || n != (lifecycle.Notice{}) {
				t.Fatalf("Parse() returned kind %q and notice %+v with error %v", kind, n, err)
			}
			return
		}
		switch kind {
		case KindTerminate:
			if !instanceIDRe.MatchString(n.InstanceID) {
				t.Fatalf("terminate notice with instance id %q", n.InstanceID)
			}
			if n.Source != "queue" || (n.Kind != "scale-in" && n.Kind != "spot") {
				t.Fatalf("terminate notice %+v", n)
			}
			if n.Kind == "scale-in" && (n.ASG == "" || n.Hook == "") {
				t.Fatalf("scale-in notice without group or hook: %+v", n)
			}
		case KindLaunch:
			if !instanceIDRe.MatchString(n.InstanceID) || n.Source != "queue" || n.Kind != "launch" || n.ASG == "" || n.Hook == "" {
				t.Fatalf("launch notice %+v", n)
			}
			switch n.Destination {
			case "", "EC2", "AutoScalingGroup", "WarmPool":
			default:
				t.Fatalf("launch notice with destination %q", n.Destination)
			}
		case KindTest, KindIgnore, KindHealth:
			if n != (lifecycle.Notice{}) {
				t.Fatalf("kind %q with notice %+v", kind, n)
			}
		default:
			t.Fatalf("unknown kind %q", kind)
		}
	})
}
