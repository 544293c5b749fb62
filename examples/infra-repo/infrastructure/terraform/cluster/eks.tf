resource "aws_eks_cluster" "this" {
  name     = local.name
  version  = var.kubernetes_version
  role_arn = aws_iam_role.cluster.arn

  vpc_config {
    subnet_ids              = aws_subnet.public[*].id
    security_group_ids      = [aws_security_group.cluster.id]
    endpoint_private_access = true
    endpoint_public_access  = true
    public_access_cidrs     = ["0.0.0.0/0"]
  }

  # Keep the control plane settings constant: changing them is an in-place
  # UpdateClusterConfig that waits on EKS DescribeUpdate (absent in moto).
  enabled_cluster_log_types = ["api", "audit"]

  tags = local.tags

  # The cluster role must be able to manage ENIs before the cluster exists,
  # and must outlive it on destroy.
  depends_on = [aws_iam_role_policy_attachment.cluster]
}

resource "aws_key_pair" "nodes" {
  key_name   = "${local.name}-nodes"
  public_key = var.ssh_public_key

  tags = local.tags
}

resource "aws_eks_node_group" "default" {
  cluster_name    = aws_eks_cluster.this.name
  node_group_name = "${local.name}-default"
  node_role_arn   = aws_iam_role.node.arn
  subnet_ids      = aws_subnet.public[*].id
  version         = var.kubernetes_version

  ami_type       = "AL2_x86_64"
  capacity_type  = "ON_DEMAND"
  instance_types = [var.instance_type]
  disk_size      = 20

  # The group is sized once from node_count; afterwards its desired size
  # belongs to the cluster autoscaler, so Terraform ignores it. Bounds are
  # constants: any in-place UpdateNodegroupConfig (scaling, labels) waits on
  # EKS DescribeUpdate, which the moto sandbox does not implement.
  scaling_config {
    desired_size = var.node_count
    min_size     = 1
    max_size     = 10
  }

  # Set explicitly: EKS (and moto) otherwise fill in a default, and since the
  # block forces replacement every plan would replace the node group.
  remote_access {
    ec2_ssh_key               = aws_key_pair.nodes.key_name
    source_security_group_ids = [aws_security_group.cluster.id]
  }

  labels = {
    "tidegate.dev/pool" = "default"
  }

  # Only identity tags, fixed for the life of the group: moto's EKS
  # TagResource/UntagResource handle clusters only, so changing var.tags
  # here would fail in the sandbox.
  tags = {
    "tidegate.dev/environment" = var.environment
    "tidegate.dev/cluster"     = var.cluster_name
    "managed-by"               = "tidegate"
  }

  lifecycle {
    ignore_changes = [scaling_config[0].desired_size]
  }

  depends_on = [aws_iam_role_policy_attachment.node]
}
