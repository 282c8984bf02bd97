"""Pulumi resource type names, spelled once: the plan finds and prices resources by them, the
mocks shape provider state by them and the tests look resources up by them. A typo in one of
these strings would silently match nothing, so code and tests use the names below."""

from __future__ import annotations

ACM_CERTIFICATE = "aws:acm/certificate:Certificate"
ACM_CERTIFICATE_VALIDATION = "aws:acm/certificateValidation:CertificateValidation"

APPAUTOSCALING_POLICY = "aws:appautoscaling/policy:Policy"
APPAUTOSCALING_TARGET = "aws:appautoscaling/target:Target"

AUTOSCALING_GROUP = "aws:autoscaling/group:Group"

CLOUDFRONT_DISTRIBUTION = "aws:cloudfront/distribution:Distribution"
CLOUDFRONT_ORIGIN_ACCESS_CONTROL = "aws:cloudfront/originAccessControl:OriginAccessControl"

CLOUDWATCH_COMPOSITE_ALARM = "aws:cloudwatch/compositeAlarm:CompositeAlarm"
CLOUDWATCH_LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
CLOUDWATCH_METRIC_ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"

COGNITO_USER_POOL = "aws:cognito/userPool:UserPool"
COGNITO_USER_POOL_CLIENT = "aws:cognito/userPoolClient:UserPoolClient"
COGNITO_USER_POOL_DOMAIN = "aws:cognito/userPoolDomain:UserPoolDomain"

EC2_DEFAULT_SECURITY_GROUP = "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup"
EC2_EIP = "aws:ec2/eip:Eip"
EC2_INTERNET_GATEWAY = "aws:ec2/internetGateway:InternetGateway"
EC2_LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
EC2_NAT_GATEWAY = "aws:ec2/natGateway:NatGateway"
EC2_ROUTE_TABLE = "aws:ec2/routeTable:RouteTable"
EC2_ROUTE_TABLE_ASSOCIATION = "aws:ec2/routeTableAssociation:RouteTableAssociation"
EC2_SECURITY_GROUP = "aws:ec2/securityGroup:SecurityGroup"
EC2_SUBNET = "aws:ec2/subnet:Subnet"
EC2_VPC = "aws:ec2/vpc:Vpc"
EC2_VPC_ENDPOINT = "aws:ec2/vpcEndpoint:VpcEndpoint"

ECR_LIFECYCLE_POLICY = "aws:ecr/lifecyclePolicy:LifecyclePolicy"
ECR_REPOSITORY = "aws:ecr/repository:Repository"

ECS_CAPACITY_PROVIDER = "aws:ecs/capacityProvider:CapacityProvider"
ECS_CLUSTER = "aws:ecs/cluster:Cluster"
ECS_CLUSTER_CAPACITY_PROVIDERS = "aws:ecs/clusterCapacityProviders:ClusterCapacityProviders"
ECS_SERVICE = "aws:ecs/service:Service"
ECS_TASK_DEFINITION = "aws:ecs/taskDefinition:TaskDefinition"

ELASTICACHE_REPLICATION_GROUP = "aws:elasticache/replicationGroup:ReplicationGroup"
ELASTICACHE_SUBNET_GROUP = "aws:elasticache/subnetGroup:SubnetGroup"

IAM_INSTANCE_PROFILE = "aws:iam/instanceProfile:InstanceProfile"
IAM_ROLE = "aws:iam/role:Role"
IAM_ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
IAM_ROLE_POLICY_ATTACHMENT = "aws:iam/rolePolicyAttachment:RolePolicyAttachment"

KMS_ALIAS = "aws:kms/alias:Alias"
KMS_KEY = "aws:kms/key:Key"

LB_LISTENER = "aws:lb/listener:Listener"
LB_LISTENER_RULE = "aws:lb/listenerRule:ListenerRule"
LB_LOAD_BALANCER = "aws:lb/loadBalancer:LoadBalancer"
LB_TARGET_GROUP = "aws:lb/targetGroup:TargetGroup"

RDS_INSTANCE = "aws:rds/instance:Instance"
RDS_PARAMETER_GROUP = "aws:rds/parameterGroup:ParameterGroup"
RDS_SUBNET_GROUP = "aws:rds/subnetGroup:SubnetGroup"

ROUTE53_RECORD = "aws:route53/record:Record"

S3_BUCKET = "aws:s3/bucket:Bucket"
S3_BUCKET_CORS_CONFIGURATION = "aws:s3/bucketCorsConfiguration:BucketCorsConfiguration"
S3_BUCKET_LIFECYCLE_CONFIGURATION = "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration"
S3_BUCKET_OWNERSHIP_CONTROLS = "aws:s3/bucketOwnershipControls:BucketOwnershipControls"
S3_BUCKET_POLICY = "aws:s3/bucketPolicy:BucketPolicy"
S3_BUCKET_PUBLIC_ACCESS_BLOCK = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
S3_BUCKET_SERVER_SIDE_ENCRYPTION_CONFIGURATION = (
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
)
S3_BUCKET_VERSIONING = "aws:s3/bucketVersioning:BucketVersioning"

SNS_TOPIC = "aws:sns/topic:Topic"
SNS_TOPIC_POLICY = "aws:sns/topicPolicy:TopicPolicy"
SNS_TOPIC_SUBSCRIPTION = "aws:sns/topicSubscription:TopicSubscription"

SSM_PARAMETER = "aws:ssm/parameter:Parameter"

WAFV2_WEB_ACL = "aws:wafv2/webAcl:WebAcl"
WAFV2_WEB_ACL_ASSOCIATION = "aws:wafv2/webAclAssociation:WebAclAssociation"

DOCKER_BUILD_IMAGE = "docker-build:index:Image"

RANDOM_PASSWORD = "random:index/randomPassword:RandomPassword"
