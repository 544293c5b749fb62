variable "cluster_name" {
  description = "Name of the EKS cluster; also the prefix of every resource name."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,38}$", var.cluster_name))
    error_message = "cluster_name must be 2-39 characters of lower-case letters, digits and dashes, starting with a letter."
  }
}

variable "environment" {
  description = "Name of the Tidegate environment this cluster belongs to (e.g. staging, production)."
  type        = string
}

variable "node_count" {
  description = "Number of worker node instances (and desired size of the managed node group)."
  type        = number
  default     = 2

  validation {
    condition     = var.node_count >= 1 && var.node_count <= 10 && floor(var.node_count) == var.node_count
    error_message = "node_count must be a whole number between 1 and 10."
  }
}

variable "instance_type" {
  description = "EC2 instance type of the worker nodes."
  type        = string
  default     = "t3.small"
}

variable "aws_region" {
  description = "AWS region to create the cluster in."
  type        = string
  default     = "us-east-1"
}

variable "vpc_cidr" {
  description = "CIDR block of the cluster VPC; the two subnets are /24s carved from it."
  type        = string
  default     = "10.40.0.0/16"

  validation {
    condition     = can(cidrhost(var.vpc_cidr, 0)) && tonumber(split("/", var.vpc_cidr)[1]) <= 22
    error_message = "vpc_cidr must be a valid IPv4 CIDR block of /22 or larger."
  }
}

variable "kubernetes_version" {
  description = "Kubernetes version of the EKS control plane and node group."
  type        = string
  default     = "1.31"
}

variable "ami_id" {
  description = "AMI of the worker node instances (the default is an Amazon Linux 2 image that the moto sandbox also knows)."
  type        = string
  default     = "ami-04681a1dbd79675a5"
}

variable "ssh_public_key" {
  description = "Public key installed on the nodes for Ansible. Replace the demo key for anything real."
  type        = string
  default     = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMeK10zUYB/Q1zU2ynWL+YeSGGBn0pDmFBDYAeAjDH+K tidegate-demo"
}

variable "admin_cidrs" {
  description = "CIDR blocks allowed to reach the Kubernetes API and SSH on the nodes (besides the VPC itself)."
  type        = list(string)
  default     = []
}

variable "kube_token" {
  description = "Bearer token placed in the kubeconfig output. Empty means a stable placeholder derived from the cluster ARN (sandbox mode substitutes its own)."
  type        = string
  default     = ""
  sensitive   = true
}

variable "tags" {
  description = "Extra tags applied to every resource."
  type        = map(string)
  default     = {}
}
