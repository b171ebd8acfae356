"""The AWS deployment: a CloudFormation merge template generated from the code, and its offline check."""
