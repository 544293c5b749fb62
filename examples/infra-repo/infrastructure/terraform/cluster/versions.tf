terraform {
  required_version = ">= 1.6.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.100"
    }
  }

  # Partial configuration: bucket, key, region, dynamodb_table (and, in sandbox
  # mode, the endpoints and credentials) are supplied with -backend-config at
  # `terraform init` time by the reconciler.
  backend "s3" {}
}

# Credentials and endpoints come from the environment (or, in sandbox mode,
# from an override the reconciler writes); the module only picks the region.
provider "aws" {
  region = var.aws_region
}
